"""The status page for triage, in a real browser (Chromium): summary, then problems with reasons, then files."""

import re

import pytest
from conftest import wait_until
from test_ecosystem import _dump_dom

from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.daemon


def cells_of(dom, table_id):
    table = re.search(r"<table id=\"%s\">(.*?)</table>" % table_id, dom, re.S).group(1)
    rows = [row for row in re.findall(r"<tr>(.*?)</tr>", table, re.S) if "<th" not in row]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]


@pytest.mark.ecosystem  # chromium
def test_status_page_puts_the_summary_and_problems_first(tmp_path, start_daemon, write_config):
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=3, seed=5)
    farm.write_all()
    acct = tmp_path / "cpu.acct"
    acct.write_text("p 948300000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\nbroken line\n")
    unmounted = str(tmp_path / "share" / "*" / "cpu.acct")
    config = write_config(farm.config_text() + "  timezone: Europe/Berlin\nrush:\n  cpu_acct: ['%s', '%s']\n"
                          "watch:\n  mode: poll\n  poll_interval: 500ms\n" % (acct, unmounted))
    daemon = start_daemon("--config", config)
    farm.inject("client_info", "unreadable")
    wait_until(lambda: b"DOWN" in daemon.get("/")[2], 15, "the broken file on the page")
    dom = _dump_dom(daemon.url + "/", tmp_path / "profile")

    assert dom.index('id="summary"') < dom.index('id="problems"') < dom.index('id="files"')
    assert "Needs attention: see Problems below." in dom
    summary = {row[0]: row[1] for row in cells_of(dom, "summary")}
    total = len(re.findall(r"<td>royalrender_|<td>rush_", dom.split('id="files"')[1]))
    assert summary["Files"] == "%d up, 1 down" % (total - 1)
    assert summary["Patterns matching no file"] == "1"
    assert summary["Configuration file"] == config
    assert summary["Last configuration reload"] == "none since start"
    assert summary["Royal Render time zone"] == "Europe/Berlin"
    assert summary["Royal Render module"].startswith("exporter.simulation.standin (")

    problems = cells_of(dom, "problems")
    assert [(p[0], p[1], p[2]) for p in problems] == [
        ("royalrender_client_info", farm.path("client_info"), "DOWN"), ("rush_cpu_acct", unmounted, "NO FILE"),
        ("configuration", "", "WARNING"), ("watch", str(tmp_path / "share"), "NOT WATCHED")]
    assert problems[2][5] == ("rush.cpu_acct[1]: folder %s/share does not exist: nothing is read until it does (a "
                              "share not mounted?) (--check-config says the same)" % tmp_path)
    assert summary["Configuration warnings"] == "1: " + problems[2][5].replace(" (--check-config says the same)", "")
    assert summary["Folders watched"] == "7 of 8; NOT WATCHED (changes seen only at rescans): %s/share" % tmp_path
    assert summary["Checkpoints"] == "off: no --storage.path, a restart reads every file from its start"
    assert summary["Web config changes"] == "0 applied"
    assert problems[0][5].startswith("loadFromFile failed: cannot load %s" % farm.path("client_info"))

    files = cells_of(dom, "files")
    assert files[0][1] == farm.path("client_info") and files[0][2] == "DOWN"  # down files first
    by_path = {row[1]: row for row in files}
    assert by_path[str(acct)][2] == "up" and by_path[str(acct)][6] == "1"  # one malformed line
    assert by_path[str(acct)][7] == "polling"
    assert "<script" not in daemon.get("/")[2].decode()


@pytest.mark.ecosystem  # chromium
def test_the_file_list_filters_without_javascript(tmp_path, start_daemon, write_config):
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=3, seed=5)
    farm.write_all()
    daemon = start_daemon("--config", write_config(farm.config_text()))
    farm.inject("client_info", "unreadable")
    wait_until(lambda: b"DOWN" in daemon.get("/")[2], 15, "the broken file on the page")
    down = _dump_dom(daemon.url + "/?status=down", tmp_path / "profile")
    assert [row[1] for row in cells_of(down, "files")] == [farm.path("client_info")]
    assert re.search(r"Files \(1 of \d+\)", down)
    clients = _dump_dom(daemon.url + "/?kind=royalrender_client_stats&q=rrclient002", tmp_path / "profile")
    assert [row[1] for row in cells_of(clients, "files")] == [farm.path("client_stats", "rrclient002")]
    # the form keeps what was chosen
    assert "<option selected=\"\">royalrender_client_stats</option>" in clients
    assert 'value="rrclient002"' in clients


def test_any_query_string_gets_the_page(tmp_path, start_daemon, write_config):
    daemon = start_daemon("--config", write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % tmp_path))
    for query in ("?" + "&" * 40, "?" + "&".join("a=%d" % i for i in range(50)), "?status=%00&kind=<b>&q='"):
        status, _, body = daemon.get("/" + query)
        assert status == 200 and b"Files (0 of 0)" in body, query
    assert "answering a request failed" not in daemon.log()
