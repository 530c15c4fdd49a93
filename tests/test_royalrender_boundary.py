"""The Royal Render boundary against an independent fake vendor module (tests/fake_rr_module.py).

The fake is found by ``module: auto`` under ``[RR]/bin/lx64/lib``, prints
on import and on every load, raises and lacks members, and refuses
undocumented type ids. The daemon runs in America/New_York with
``royalrender.timezone: Australia/Adelaide``, its worker under a bare
virtual environment's Python (standard library only), and every value is
checked exactly in the documented units.
"""

import calendar
import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from conftest import REPO, value, wait_until

from exporter.royalrender import server_stats
from exporter.royalrender.client import WorkerClient, WorkerCrashed, WorkerError, WorkerSettings
from exporter.royalrender.reader import written
from exporter.royalrender.timezone import Timezone
from exporter.royalrender.vendor.calls import MIB, SKIPPED
from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.inprocess

HERE = os.path.dirname(os.path.abspath(__file__))
FARM_ZONE = "Australia/Adelaide"  # UTC+10:30 in November: a half-hour offset, east of UTC
DAEMON_ZONE = "America/New_York"
MODULE_NAME = "libpyRR%d%d_datafiles" % sys.version_info[:2]
MAGIC = "FAKE-RR"


def fake_file(path, class_name, **data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"magic": MAGIC, "class": class_name, "data": data}, handle)


def farm_time(*wall_clock):
    """Unix time of a wall-clock time in the farm's zone."""
    return datetime.datetime(*wall_clock, tzinfo=ZoneInfo(FARM_ZONE)).timestamp()


class FakeFarm:
    """An RR folder with the fake module in bin/lx64/lib and one file of each kind it loads."""

    SAVED = (2026, 11, 20, 14, 30)  # the server's last save, farm wall clock
    DAILY_MTIME = (2026, 11, 20, 10, 20)  # five minutes into anna's newest slot (40: 10:00-10:15)

    def __init__(self, root):
        self.root = str(root)
        self.lib = os.path.join(self.root, "bin", "lx64", "lib")
        os.makedirs(self.lib)
        shutil.copy(os.path.join(HERE, "fake_rr_module.py"), os.path.join(self.lib, MODULE_NAME + ".py"))
        self.server = os.path.join(self.root, "sub", "stats", "server_stats.db")
        self.server_writes = 0
        self.daily = os.path.join(self.root, "sub", "stats", "server", "daily.db")
        self.clients = os.path.join(self.root, "sub", "stats", "clientIPstats82.db")
        self.write_server()
        self.write_daily()
        self.write_clients()

    def patch_module(self, code):
        """Appends ``code`` to the installed fake module: a module that misbehaves in one more way."""
        with open(os.path.join(self.lib, MODULE_NAME + ".py"), "a") as module:
            module.write("\n" + code)

    def write_server(self, jobs_total=42):
        local_seconds = calendar.timegm(self.SAVED + (0,))
        latest = {"slot_used": 1, "clients_free": 3, "clients_rendering": 5, "clients_disabled": 1,
                  "jobs_total": jobs_total, "jobs_rendering": 7, "jobs_unfinished": 9, "CpuMachine": 37,
                  "CpuProcess": 4, "serverMemUsage_Machine": 2048, "framesPerMin": 12, "frameTime": 95,
                  "framesLeft": 1000}
        older = dict(latest, clients_rendering=99, jobs_total=1)
        fake_file(self.server, "_rrGlobalStatsLS", lastSaveDay=local_seconds // 60, lastSaveMonth=0,
                  day={"870": latest, "869": older})
        self.server_writes += 1  # the server writes the file as it saves, each write a second later
        written = farm_time(*self.SAVED) + 20 + self.server_writes
        os.utime(self.server, (written, written))

    def write_daily(self, numbering=0, **extra):
        def entry(name, kind, slots):
            return {"name": name, "type": kind, "listed_under": kind + numbering, "slots": slots}

        entries = [entry("anna", 0, {"40": {"slotSet": 1, "jobsRendering": 2, "framesRendered": 30},
                                     "41": {"slotSet": 0, "jobsRendering": 50}}),
                   entry("tahoe", 1, {"40": {"slotSet": 1, "jobsWaiting": 4}}),
                   entry("arnold", 2, {"39": {"slotSet": 1, "framesRendered": 77}})]
        fake_file(self.daily, "_dailyStats_data", entries=entries, **extra)
        mtime = farm_time(*self.DAILY_MTIME)
        os.utime(self.daily, (mtime, mtime))

    def write_clients(self):
        clients = [{"saveNameCopy": "render01", "saveVersionCopy": "9.1.02", "lastConnect": 1795000000,
                    "WOLTryCount": 2, "lastWOLTry": 1794999000,
                    "wols": [{"success": 1, "bootTime": 42, "dateTime": 1794999000}]},
                   {"saveNameCopy": "render02", "saveVersionCopy": "9.1.01", "lastConnect": 1795000100}]
        fake_file(self.clients, "_server_clientInfo", clients=clients)

    def config(self, python):
        return ("royalrender:\n  root: '%s'\n  module: auto\n  timezone: %s\n  python: '%s'\n"
                "  read_timeout: 5s\n  client_groups:\n    enabled: false\n"
                "watch:\n  rescan_interval: 1h\n" % (self.root, FARM_ZONE, python))

    def settings(self, **changes):
        base = dict(module="auto", module_paths=(), root=self.root, python=sys.executable,
                    timezone=Timezone(FARM_ZONE), timeout=5.0, memory_limit=0)
        return WorkerSettings(**dict(base, **changes))


@pytest.fixture
def fake_farm(tmp_path):
    return FakeFarm(tmp_path / "rr")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python with the standard library only: the worker must need nothing else."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import prometheus_client"], capture_output=True, timeout=30)
    assert probe.returncode != 0, "the bare environment must not see the exporter's dependencies"
    return python


def daemon_env():
    return dict(os.environ, TZ=DAEMON_ZONE)


def test_daemon_exports_exact_values_from_a_printing_vendor_module(fake_farm, bare_python, start_daemon,
                                                                    write_config):
    daemon = start_daemon("--config", write_config(fake_farm.config(bare_python)), env=daemon_env())
    samples = daemon.wait_for_value("royalrender_jobs", 42, timeout=20)
    for path in (fake_farm.server, fake_farm.daily, fake_farm.clients):
        kind = {fake_farm.server: "server_stats", fake_farm.daily: "daily_stats",
                fake_farm.clients: "client_info"}[path]
        assert value(samples, "renderfarm_exporter_source_up", kind="royalrender_" + kind, path=path) == 1

    # server_stats.db: the latest slot, local times in the farm's zone, base units
    assert value(samples, "royalrender_server_stats_last_save_timestamp_seconds") == farm_time(*FakeFarm.SAVED)
    assert value(samples, "royalrender_server_stats_slot_timestamp_seconds") == farm_time(*FakeFarm.SAVED)
    assert value(samples, "royalrender_clients", state="rendering") == 5
    assert value(samples, "royalrender_clients", state="free") == 3
    assert value(samples, "royalrender_server_cpu_ratio", scope="machine") == pytest.approx(0.37)
    assert value(samples, "royalrender_server_machine_memory_bytes") == 2048 * MIB
    assert value(samples, "royalrender_frames_per_minute") == 12
    # a member that raises and one that is missing drop only their own values, and are counted
    assert value(samples, "royalrender_server_temperature_celsius") is None
    assert value(samples, "royalrender_clients_average_temperature_celsius") is None
    for member in ("_rrGlobalStats_item.serverTemperature", "_rrGlobalStats_item.clients_avTemperature"):
        assert value(samples, "renderfarm_exporter_royalrender_member_failures_total",
                     kind="royalrender_server_stats", member=member) == 1

    # daily stats: ids 0..2 only (the fake raises on 3), slot times from local midnight in the farm's zone
    midnight = farm_time(2026, 11, 20, 0, 0)
    assert value(samples, "royalrender_user_jobs", user="anna", state="rendering") == 2
    assert value(samples, "royalrender_user_slot_timestamp_seconds", user="anna") == midnight + 40 * 900
    assert value(samples, "royalrender_project_jobs", project="tahoe", state="waiting") == 4
    assert value(samples, "royalrender_render_app_frames_rendered", render_app="arnold") == 77
    assert value(samples, "renderfarm_exporter_royalrender_member_failures_total", kind="royalrender_daily_stats",
                 member="_dailyStats_data.getJobsByType(3)") is None

    # clientIPstats82.db: Unix times as they are
    assert value(samples, "royalrender_client_info", client="render01", version="9.1.02") == 1
    assert value(samples, "royalrender_client_last_connect_timestamp_seconds", client="render01") == 1795000000
    assert value(samples, "royalrender_client_wol_last_success", client="render01") == 1
    assert value(samples, "royalrender_client_wol_last_boot_seconds", client="render01") == 42
    assert value(samples, "royalrender_client_wol_failed_tries", client="render01") == 2
    assert value(samples, "royalrender_client_wol_last_success", client="render02") is None

    info = [dict(labels) for (name, labels) in samples if name == "renderfarm_exporter_royalrender_module_info"]
    assert len(info) == 1 and info[0]["module"] == MODULE_NAME and info[0]["timezone"] == FARM_ZONE
    assert info[0]["version"] == "9.1.fake"
    assert info[0]["python"].endswith("(%s)" % bare_python)
    assert value(samples, "renderfarm_exporter_royalrender_worker_restarts_total") == 0

    page = daemon.get("/")[2].decode()
    for note in ("<td>Royal Render module</td><td>%s (%s)</td>" % (MODULE_NAME,
                                                                  os.path.join(fake_farm.lib, MODULE_NAME + ".py")),
                 "<td>Royal Render module version</td><td>9.1.fake</td>",
                 "<td>Royal Render time zone</td><td>%s</td>" % FARM_ZONE):
        assert note in page, note

    # the module prints on every load: a changed file is still read right, and nothing is shifted
    fake_farm.write_server(jobs_total=43)
    samples = daemon.wait_for_value("royalrender_jobs", 43, timeout=10)
    assert value(samples, "royalrender_user_jobs", user="anna", state="rendering") == 2
    assert value(samples, "royalrender_client_last_connect_timestamp_seconds", client="render02") == 1795000100
    assert "FAKE-RR" in daemon.log() and "Royal Render module printed" in daemon.log()


def probe(config_path, env=None):
    return subprocess.run([sys.executable, "-m", "exporter", "rr-probe", "--config", config_path], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.daemon
def test_rr_probe_reports_what_works_what_is_missing_and_what_the_module_printed(fake_farm, bare_python,
                                                                                  write_config):
    result = probe(write_config(fake_farm.config(bare_python)), env=daemon_env())
    out = result.stdout
    assert result.returncode == 3, out + result.stderr
    assert "Module loaded: %s" % MODULE_NAME in out and "NOT LOADED" not in out
    assert "getRRModuleVersion(): 9.1.fake" in out
    assert "module builds in the installation, for Python: %d.%d" % sys.version_info[:2] in out
    assert "worker interpreter: %s" % bare_python in out
    assert "time zone of RR's local times: %s" % FARM_ZONE in out
    # a member that raises on an unloaded instance is reported with its error, the import still counts
    assert "lastSaveMonth: raised RuntimeError: no file loaded" in out
    assert "_ClientGroupList       not present (optional: not in the Python reference)" in out
    assert "settingsFileDate" not in out.split("_ClientGroupList")[1].split("\n")[0]
    assert "  _rrGlobalStatsLS       1 of 12 documented members not usable" in out
    server = out.split("== server_stats")[1].split("\n== ")[0]
    assert ("member failed, its values are not exported: _rrGlobalStats_item.serverTemperature: "
            "RuntimeError: HDD sensor not readable") in server
    assert "member failed, its values are not exported: _rrGlobalStats_item.clients_avTemperature: missing" in server
    assert 'royalrender_clients{state="rendering"} 5.0' in server
    assert "(2026-11-20 14:30:00 ACDT)" in server
    printed = out.split("What the vendor module printed")[1]
    assert "FAKE-RR libpyRR datafiles loaded" in printed and "FAKE-RR native banner" in printed
    assert "FAKE-RR loading %s" % fake_farm.server in printed
    problems = out.split("Problems (")[1]
    assert problems.startswith("2)") and "member _rrGlobalStats_item.serverTemperature failed" in problems


def test_stray_write_onto_the_reply_channel_fails_the_call_and_restarts_the_worker(fake_farm):
    worker = WorkerClient(fake_farm.settings())
    try:
        assert worker.read("client_info", fake_farm.clients, {}).data["sizes"] == {"count": 2}
        # stray writes to low descriptors miss the protocol pipes, which the worker moved out of their way
        fake_file(fake_farm.server, "_rrGlobalStatsLS", scribble_below=200, lastSaveDay=1, day={})
        assert worker.read("server_stats", fake_farm.server, {}).data["sizes"]["dayMax"] == 1440
        # one that reaches them fails the call and replaces the worker
        fake_file(fake_farm.server, "_rrGlobalStatsLS", scribble_below=1 << 20, lastSaveDay=1, day={})
        with pytest.raises(WorkerCrashed, match="protocol error"):
            worker.read("server_stats", fake_farm.server, {})
        assert worker.restarts == 1
        reply = worker.read("client_info", fake_farm.clients, {})
        assert [c["name"] for c in reply.data["clients"]] == ["render01", "render02"]
    finally:
        worker.close()


def read_after_a_crash_in(step, worker, path):
    """Reads ``path`` twice: the first read crashes the worker in ``step``, the second avoids it."""
    with pytest.raises(WorkerCrashed) as crash:
        worker.read("daily_stats", path, {})
    assert crash.value.step == step
    return worker.read("daily_stats", path, {})


def test_a_risky_call_that_crashed_the_worker_is_never_made_again(fake_farm):
    fake_farm.write_daily(numbering=1, crash_on_type_ids=["3"])  # RR 9's ids on a module that dies on id 3
    worker = WorkerClient(fake_farm.settings())
    try:
        reply = read_after_a_crash_in("_dailyStats_data.getJobsByType(3)", worker, fake_farm.daily)
        assert reply.member_failures == {"_dailyStats_data.getJobsByType(3)": SKIPPED}
        assert reply.data["shape"]["type_ids"] == "1..3"
        assert reply.data["shape"]["evidence"] == "every entry of id 1 is typed 0 (users), of id 2 typed 1"
        assert reply.data["user"]["anna"]["set"][0]["jobs_rendering"] == 2
        assert reply.data["project"]["tahoe"]["set"][0]["jobs_waiting"] == 4
        assert reply.data["render_app"] == {}
        assert list(worker.avoided) == ["_dailyStats_data.getJobsByType(3)"] and worker.restarts == 1
    finally:
        worker.close()


def test_worker_memory_limit_fails_the_read_not_the_daemon(fake_farm):
    fake_file(fake_farm.server, "_rrGlobalStatsLS", allocate_mib=2048, lastSaveDay=1, day={})
    worker = WorkerClient(fake_farm.settings(memory_limit=768 << 20))
    try:
        with pytest.raises(WorkerError, match="MemoryError"):
            worker.read("server_stats", fake_farm.server, {})
        assert worker.read("client_info", fake_farm.clients, {}).data["sizes"] == {"count": 2}
    finally:
        worker.close()


def test_worker_environment_has_the_module_folder_and_the_farm_zone(fake_farm):
    worker = WorkerClient(fake_farm.settings())
    try:
        worker.read("client_info", fake_farm.clients, {})
    finally:
        worker.close()
    banner = [line for line in worker.vendor_output if line.startswith("FAKE-RR env")]
    assert banner and fake_farm.lib in banner[0].split("LD_LIBRARY_PATH=")[1].split(os.pathsep)


def test_worker_reports_the_stand_in_it_loaded(fake_farm):
    worker = WorkerClient(fake_farm.settings(module="simulated", timezone=Timezone()))
    try:
        assert worker.module_version() == "stand-in 1.0 (renderfarm-exporter; not Royal Render)"
        assert worker.module_info["module"] == "exporter.simulation.standin"
    finally:
        worker.close()


@pytest.fixture
def sim_farm(tmp_path):
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=6, seed=5)
    sim.write_all()
    return sim


def test_one_crashing_and_one_hanging_file_leave_every_other_file_up(sim_farm, start_daemon, write_config, tmp_path):
    acct = tmp_path / "cpu.acct"
    acct.write_text("")
    config = sim_farm.config_text().replace("read_timeout: 5s", "read_timeout: 1s")
    config += "rush:\n  cpu_acct: ['%s']\nwatch:\n  rescan_interval: 1h\n" % acct
    crashing, hanging = sim_farm.clients[0], sim_farm.clients[1]
    sim_farm.inject("client_stats", "crash", crashing)
    sim_farm.inject("client_stats", "hang", hanging)
    daemon = start_daemon("--config", write_config(config))
    bad = {sim_farm.path("client_stats", crashing), sim_farm.path("client_stats", hanging)}
    daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind="royalrender_client_stats",
                          path=sim_farm.path("client_stats", hanging), timeout=20)

    frames, deadline, rounds = 0, time.monotonic() + 10, 0
    while time.monotonic() < deadline:
        samples = daemon.samples()
        ups = {labels: v for (name, labels), v in samples.items() if name == "renderfarm_exporter_source_up"
               and dict(labels)["kind"].startswith("royalrender_")}
        assert len(ups) >= 12
        for labels, up in ups.items():
            assert up == (0 if dict(labels)["path"] in bad else 1), (dict(labels), up)
        if rounds % 5 == 0:  # healthy files keep changing and are re-read at once
            sim_farm.write_client_stats(sim_farm.clients[2])
            with open(acct, "a") as handle:
                handle.write("p 948300000 tahoe.%d T anna 1 render01 100 10 0 0 0 1\n" % frames)
            frames += 1
        rounds += 1
    daemon.wait_for_value("rush_frames_total", frames, host="render01", status="done", timeout=3)
    assert rounds > 50

    sim_farm.heal("client_stats", crashing)
    sim_farm.write_client_stats(crashing)
    daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind="royalrender_client_stats",
                          path=sim_farm.path("client_stats", crashing), timeout=5)


# -- what an attack with misbehaving modules found -------------------------------------------


def test_an_rr9_module_numbering_0_to_2_still_puts_each_entry_under_its_own_type(fake_farm):
    fake_farm.patch_module("class _dailyStats_timeline(object):\n    pass\n")  # looks like RR 9
    fake_farm.write_daily(crash_on_type_ids=["3"])  # but numbers 0..2, and dies on RR 9's id 3
    worker = WorkerClient(fake_farm.settings())
    try:
        reply = read_after_a_crash_in("_dailyStats_data.getJobsByType(3)", worker, fake_farm.daily)
        assert reply.data["shape"]["type_ids"] == "0..2"
        assert reply.data["shape"]["evidence"] == ("getJobsByType(3) failed although the module has RR 9's "
                                                   "_dailyStats_timeline, and getJobsByType(0) had entries")
        assert list(reply.data["user"]) == ["anna"] and list(reply.data["project"]) == ["tahoe"]
        assert list(reply.data["render_app"]) == ["arnold"]
        assert reply.member_failures == {"_dailyStats_data.getJobsByType(3)": SKIPPED}
    finally:
        worker.close()


def test_a_crash_after_a_risky_call_returned_is_blamed_on_the_file(fake_farm):
    fake_farm.write_daily(numbering=1)  # RR 9's ids: id 3 is a risky call, and it works
    with open(fake_farm.daily) as handle:
        content = json.load(handle)
    content["data"]["entries"][0]["crash_in_slots"] = True  # then a documented call crashes
    with open(fake_farm.daily, "w") as handle:
        json.dump(content, handle)
    worker = WorkerClient(fake_farm.settings())
    try:
        with pytest.raises(WorkerCrashed) as crash:
            worker.read("daily_stats", fake_farm.daily, {})
        assert crash.value.step is None and worker.avoided == {}
    finally:
        worker.close()


def test_children_the_module_forks_die_with_the_worker_and_a_crash_is_seen_at_once(fake_farm, tmp_path):
    pids = tmp_path / "children"
    fake_farm.patch_module(
        "if os.fork() == 0:\n"
        "    open(%r, 'a').write('%%d\\n' %% os.getpid())\n"
        "    import time as _t\n    _t.sleep(120)\n    os._exit(0)\n" % str(pids))
    fake_file(fake_farm.server, "_rrGlobalStatsLS", crash_on_load=True)
    worker = WorkerClient(fake_farm.settings(timeout=20.0))
    try:
        started = time.monotonic()
        with pytest.raises(WorkerCrashed, match="crashed"):
            worker.read("server_stats", fake_farm.server, {})
        assert time.monotonic() - started < 10, "seen as a crash, not after read_timeout"
    finally:
        worker.close()
    (child,) = [int(line) for line in pids.read_text().split()]

    def gone():
        try:
            with open("/proc/%d/stat" % child) as handle:
                return handle.read().split(") ")[1][0] == "Z"
        except OSError:
            return True

    wait_until(gone, 10, "the forked child to be killed")


def _dead(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ")[1][0] == "Z"
    except OSError:
        return True


def test_children_that_leave_the_process_group_die_with_the_worker_and_leak_nothing(fake_farm, tmp_path):
    """A child that calls setsid() (and one of its own, whose parent then exits) escapes a kill of the group:
    each worker restart must still end them all, and leave no thread or descriptor behind."""
    pids = tmp_path / "children"
    fake_farm.patch_module(
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() != 0:\n        os._exit(0)\n"  # the grandchild is orphaned at once
        "    open(%r, 'a').write('%%d\\n' %% os.getpid())\n"
        "    import time as _t\n    _t.sleep(120)\n    os._exit(0)\n" % str(pids))
    fake_file(fake_farm.server, "_rrGlobalStatsLS", crash_on_load=True)
    worker = WorkerClient(fake_farm.settings(timeout=20.0))
    threads, descriptors = threading.active_count(), len(os.listdir("/proc/self/fd"))
    try:
        for restart in range(1, 4):
            with pytest.raises(WorkerCrashed, match="crashed"):
                worker.read("server_stats", fake_farm.server, {})
            wait_until(lambda n=restart: pids.exists() and len(pids.read_text().split()) == n, 10,
                       "the module's child of start %d" % restart)
            for child in [int(line) for line in pids.read_text().split()]:
                wait_until(lambda pid=child: _dead(pid), 10, "the escaped child %d to be killed" % child)
    finally:
        worker.close()
    wait_until(lambda: threading.active_count() == threads, 10, "the vendor output threads to end")
    assert len(os.listdir("/proc/self/fd")) == descriptors


def test_a_module_that_changes_the_time_zone_does_not_shift_rr_times(fake_farm):
    """RR's local times are converted on the daemon's side, in the configured zone, whatever the worker's TZ."""
    fake_farm.patch_module("os.environ['TZ'] = 'UTC'\nimport time as _t\n_t.tzset()\n")
    worker = WorkerClient(fake_farm.settings())
    try:
        reply = worker.read("server_stats", fake_farm.server, {})
    finally:
        worker.close()
    interpreted = server_stats.interpret(reply.data, written(fake_farm.server, worker))
    assert interpreted["last_save_time"] == farm_time(*FakeFarm.SAVED)


def test_absurd_values_drop_only_themselves(fake_farm):
    fake_file(fake_farm.server, "_rrGlobalStatsLS", lastSaveDay=2 ** 63 - 1, day={})
    worker = WorkerClient(fake_farm.settings())
    try:
        reply = worker.read("server_stats", fake_farm.server, {})
    finally:
        worker.close()
    assert reply.data["last_save"] is None and reply.data["sizes"]["dayMax"] == 1440
    assert reply.member_failures == {
        "_rrGlobalStatsLS.lastSaveDay": "expected a finite number up to 2**53, got 9223372036854775807"}


@pytest.mark.daemon
def test_rr_probe_says_not_loaded_when_the_import_raises(fake_farm, write_config):
    fake_farm.patch_module("raise RuntimeError('licence server unreachable')\n")
    result = probe(write_config(fake_farm.config(sys.executable)))
    assert result.returncode == 1, result.stdout
    assert "Module NOT LOADED" in result.stdout
    assert "found, but its import failed: RuntimeError: licence server unreachable" in result.stdout
    assert "the libraries it needs are in its folder" in result.stdout
