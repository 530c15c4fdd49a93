"""Past one machine: two sites' agents remote_write to one central Prometheus (all real, loopback only).

The shipped examples config/prometheus/site-agent.yml and central.yml are used
as they are, with only the addresses, the site name and the intervals changed.
"""

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml
from conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.ecosystem

PROMETHEUS_DIR = os.path.join(REPO, "config", "prometheus")
AGENT_EXAMPLE = os.path.join(PROMETHEUS_DIR, "site-agent.yml")
CENTRAL_EXAMPLE = os.path.join(PROMETHEUS_DIR, "central.yml")
FEDERATION_EXAMPLE = os.path.join(PROMETHEUS_DIR, "central-federation.yml")
SITE_EXAMPLE = os.path.join(PROMETHEUS_DIR, "prometheus.yml")
SITES = ("a", "b")


def tool(name):
    path = shutil.which(name)
    assert path, "%s is missing: scripts/test installs it (Debian package)" % name
    return path


def all_ready(exporters, servers):
    """Waits for every exporter and Prometheus; returns ``arrived(expr, count)`` over the first (central) one."""
    for exporter in exporters.values():
        exporter.wait_ready()
    for server in servers:
        wait_until(server.ready, 30, "prometheus on %s to be ready" % server.url)

    def arrived(expr, count):
        try:
            return len(servers[0].query(expr)) == count
        except OSError:
            return False

    return arrived


def test_examples_pass_promtool_check_config():
    agent = subprocess.run([tool("promtool"), "check", "config", "--agent", AGENT_EXAMPLE],
                           capture_output=True, text=True, timeout=60)
    assert agent.returncode == 0 and "SUCCESS" in agent.stdout, agent.stdout + agent.stderr
    central = subprocess.run([tool("promtool"), "check", "config", CENTRAL_EXAMPLE],
                             capture_output=True, text=True, timeout=60)
    assert central.returncode == 0 and "SUCCESS: 22 rules found" in central.stdout, central.stdout + central.stderr
    federation = subprocess.run([tool("promtool"), "check", "config", FEDERATION_EXAMPLE],
                                capture_output=True, text=True, timeout=60)
    assert federation.returncode == 0 and "SUCCESS" in federation.stdout, federation.stdout + federation.stderr
    with open(AGENT_EXAMPLE) as handle:
        agent_config = yaml.safe_load(handle)
    assert set(agent_config["global"]["external_labels"]) == {"site"}
    assert agent_config["scrape_configs"][0]["job_name"] == "renderfarm"
    assert agent_config["remote_write"][0]["url"].endswith("/api/v1/write")
    # An agent evaluates nothing: rules and alerting belong to the central server.
    assert "rule_files" not in agent_config and "alerting" not in agent_config


class Prometheus:
    """The Debian prometheus binary on a free loopback port, its log in a file."""

    def __init__(self, tmp_path, name, config, flags):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = tmp_path / ("%s.log" % name)
        config_path = tmp_path / ("%s.yml" % name)
        config_path.write_text(yaml.safe_dump(config))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), "--config.file", str(config_path), "--web.listen-address",
             "127.0.0.1:%d" % self.port, "--log.level", "info", *flags],
            stdout=subprocess.DEVNULL, stderr=self._log)

    def log(self):
        return self.log_path.read_text(errors="replace")[-4000:]

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited with %s:\n%s" % (self.proc.returncode, self.log()))
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def query(self, expr):
        with urllib.request.urlopen(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                                    timeout=5) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_prometheus(tmp_path):
    started = []

    def start(name, config, flags):
        server = Prometheus(tmp_path, name, config, flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _agent_config(site, exporter_port, central_url):
    with open(AGENT_EXAMPLE) as handle:
        config = yaml.safe_load(handle)
    config["global"]["scrape_interval"] = "1s"
    config["global"]["external_labels"]["site"] = site
    config["scrape_configs"][0]["static_configs"] = [{"targets": ["127.0.0.1:%d" % exporter_port]}]
    config["remote_write"][0]["url"] = central_url + "/api/v1/write"
    # Short deadlines so samples arrive within seconds (the defaults batch for 5 s
    # and back off up to 5 s after the central server was not yet there).
    config["remote_write"][0]["queue_config"] = {
        "batch_send_deadline": "500ms", "min_backoff": "100ms", "max_backoff": "1s"}
    return config


def _by_site(result):
    return {series["metric"]["site"]: series for series in result}


def test_two_sites_reach_the_central_server_told_apart_by_external_labels(tmp_path, start_daemon,
                                                                          start_prometheus):
    with open(CENTRAL_EXAMPLE) as handle:
        central_config = yaml.safe_load(handle)
    central_config["global"]["evaluation_interval"] = "1s"
    central_config["rule_files"] = [os.path.join(PROMETHEUS_DIR, rules) for rules in central_config["rule_files"]]
    central = start_prometheus("central", central_config, [
        "--web.enable-remote-write-receiver", "--storage.tsdb.path", str(tmp_path / "central-data")])

    exporters = {site: start_daemon("--demo", ready=False) for site in SITES}
    agents = {}
    for site in SITES:
        agents[site] = start_prometheus("agent-" + site, _agent_config(site, exporters[site].port, central.url), [
            "--enable-feature=agent", "--storage.agent.path", str(tmp_path / ("agent-%s-data" % site))])
    arrived = all_ready(exporters, [central, *agents.values()])

    try:
        wait_until(lambda: arrived('up{job="renderfarm"} == 1', 2), 40, "both sites' up")
        wait_until(lambda: arrived('count by (site) (rush_daemon_online)', 2), 40, "both sites' Rush series")
        wait_until(lambda: arrived('royalrender_client_info{client="rrclient001"}', 2), 40,
                   "both sites' Royal Render series")
        wait_until(lambda: arrived('count by (site) (royalrender_clients) == 3', 2), 40,
                   "every client state of both sites")
    except AssertionError as exc:
        raise AssertionError("%s\ncentral:\n%s\nagent a:\n%s" % (exc, central.log(), agents["a"].log())) from None

    def settled(expr, expected, what):
        seen = {}

        def check():
            seen["by site"] = {site: series["value"][1] for site, series in _by_site(central.query(expr)).items()}
            return seen["by site"] == expected

        try:
            wait_until(check, 20, what)
        except AssertionError:
            raise AssertionError("%s: %s is %s" % (what, expr, seen.get("by site"))) from None

    instance = {site: "127.0.0.1:%d" % exporters[site].port for site in SITES}

    up = _by_site(central.query('up{job="renderfarm"}'))
    assert {site: series["metric"] for site, series in up.items()} == {
        site: {"__name__": "up", "job": "renderfarm", "instance": instance[site], "site": site} for site in SITES}
    assert {site: series["value"][1] for site, series in up.items()} == {"a": "1", "b": "1"}

    # Rush: the same host exists at both sites, one series each, labelled with its site.
    online = _by_site(central.query('rush_daemon_online{host="render01"}'))
    assert {site: series["metric"] for site, series in online.items()} == {
        site: {"__name__": "rush_daemon_online", "host": "render01", "job": "renderfarm",
               "instance": instance[site], "site": site} for site in SITES}
    assert {series["value"][1] for series in online.values()} <= {"0", "1"}
    # Remote write sends a scrape's samples in batches over several shards, so a
    # query may briefly see part of the latest scrape: aggregates are awaited.
    settled("count by (site) (rush_daemon_online)", {"a": "36", "b": "36"}, "36 Rush hosts at each site")
    wait_until(lambda: arrived("sum by (site) (rush_frames_total) > 0", 2), 20, "Rush frames at both sites")

    # Royal Render: each demo farm has 24 clients; rrclient001 runs version 9.1.0 at both.
    info = _by_site(central.query('royalrender_client_info{client="rrclient001"}'))
    assert {site: series["metric"] for site, series in info.items()} == {
        site: {"__name__": "royalrender_client_info", "client": "rrclient001", "version": "9.1.0",
               "job": "renderfarm", "instance": instance[site], "site": site} for site in SITES}
    assert {series["value"][1] for series in info.values()} == {"1"}
    settled("sum by (site) (royalrender_clients)", {"a": "24", "b": "24"}, "24 RR clients at each site")
    states = central.query('royalrender_clients{site="a"}')
    assert sorted(series["metric"]["state"] for series in states) == ["disabled", "free", "rendering"]
    assert all(set(series["metric"]) == {"__name__", "state", "job", "instance", "site"} for series in states)

    # Every exporter series at the central server carries a site, and only the two sites exist.
    assert central.query('{__name__=~"rush_.+|royalrender_.+|renderfarm_exporter_.+", site=""}') == []
    sites = central.query('count by (site) ({__name__=~"rush_.+|royalrender_.+"})')
    assert sorted(series["metric"]["site"] for series in sites) == ["a", "b"]

    # The agents keep nothing to query: the samples live centrally.
    with pytest.raises(urllib.error.HTTPError) as refused:
        agents["a"].query("up")
    assert refused.value.code == 422 and b"unavailable with Prometheus Agent" in refused.value.read()

    # The central server evaluates the shipped rules over the remote-written series, per site.
    wait_until(lambda: arrived("instance:royalrender_clients_rendering:ratio", 2), 30,
               "the recording rule at both sites")
    ratio = _by_site(central.query("instance:royalrender_clients_rendering:ratio"))
    assert sorted(ratio) == ["a", "b"]
    assert all(0 <= float(series["value"][1]) <= 1 for series in ratio.values())


def test_a_central_server_federates_two_full_site_servers(tmp_path, start_daemon, start_prometheus):
    """The alternative: full site Prometheus servers (rules at the site), pulled through /federate."""
    exporters = {site: start_daemon("--demo", ready=False) for site in SITES}
    sites = {}
    for site in SITES:
        with open(SITE_EXAMPLE) as handle:
            config = yaml.safe_load(handle)
        config["global"].update(scrape_interval="1s", evaluation_interval="1s", external_labels={"site": site})
        config["rule_files"] = [os.path.join(PROMETHEUS_DIR, rules) for rules in config["rule_files"]]
        config["scrape_configs"][0]["static_configs"] = [{"targets": ["127.0.0.1:%d" % exporters[site].port]}]
        sites[site] = start_prometheus("site-" + site, config, [
            "--storage.tsdb.path", str(tmp_path / ("site-%s-data" % site))])
    with open(FEDERATION_EXAMPLE) as handle:
        config = yaml.safe_load(handle)
    config["global"]["scrape_interval"] = "1s"
    config["scrape_configs"][0]["static_configs"] = [
        {"targets": ["127.0.0.1:%d" % sites[site].port for site in SITES]}]
    central = start_prometheus("central", config, ["--storage.tsdb.path", str(tmp_path / "central-data")])
    arrived = all_ready(exporters, [central, *sites.values()])

    try:
        wait_until(lambda: arrived('up{job="federate-renderfarm"} == 1', 2), 40, "both site servers federated")
        wait_until(lambda: arrived('rush_daemon_online{host="render01"}', 2), 40, "both sites' Rush series")
        wait_until(lambda: arrived('royalrender_client_info{client="rrclient001"}', 2), 40, "both sites' RR series")
        wait_until(lambda: arrived("instance:royalrender_clients_rendering:ratio", 2), 40, "both sites' recording rule")
    except AssertionError as exc:
        raise AssertionError("%s\ncentral:\n%s\nsite a:\n%s" % (exc, central.log(), sites["a"].log())) from None

    instance = {site: "127.0.0.1:%d" % exporters[site].port for site in SITES}
    # honor_labels keeps the site servers' job and instance; /federate adds the external label site.
    up = _by_site(central.query('up{job="renderfarm"}'))
    assert {site: series["metric"] for site, series in up.items()} == {
        site: {"__name__": "up", "job": "renderfarm", "instance": instance[site], "site": site} for site in SITES}
    online = _by_site(central.query('rush_daemon_online{host="render01"}'))
    assert {site: series["metric"] for site, series in online.items()} == {
        site: {"__name__": "rush_daemon_online", "host": "render01", "job": "renderfarm",
               "instance": instance[site], "site": site} for site in SITES}
    info = _by_site(central.query('royalrender_client_info{client="rrclient001"}'))
    assert {site: series["metric"] for site, series in info.items()} == {
        site: {"__name__": "royalrender_client_info", "client": "rrclient001", "version": "9.1.0",
               "job": "renderfarm", "instance": instance[site], "site": site} for site in SITES}
    # A recording rule evaluated at each site arrives with that site's label only.
    ratio = _by_site(central.query("instance:royalrender_clients_rendering:ratio"))
    assert {site: series["metric"] for site, series in ratio.items()} == {
        site: {"__name__": "instance:royalrender_clients_rendering:ratio", "job": "renderfarm",
               "instance": instance[site], "site": site} for site in SITES}
    assert all(0 <= float(series["value"][1]) <= 1 for series in ratio.values())
    assert central.query('{__name__=~"rush_.+|royalrender_.+", site=""}') == []
