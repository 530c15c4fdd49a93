"""The pieces around the exporter, each checked by the real tool: promtool, Prometheus, Chromium, systemd."""

import json
import os
import re
import shutil
import subprocess
import textwrap
import urllib.parse
import urllib.request

import pytest
import yaml
from conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.inprocess

PROMETHEUS_DIR = os.path.join(REPO, "config", "prometheus")
RULES = os.path.join(PROMETHEUS_DIR, "renderfarm-exporter.rules.yml")
DASHBOARD = os.path.join(REPO, "config", "grafana", "dashboards", "renderfarm.json")
ALERTS_DOC = os.path.join(REPO, "docs", "alerts.md")
RUNBOOK_PARTS = ("**What it means.**", "**Confirm it.**", "**What to do.**")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
METRIC = re.compile(r"\b(?:rush|royalrender|renderfarm_exporter)_[a-zA-Z0-9_]+\b")
RECORDED = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*(?::[a-zA-Z0-9_]+)+")
RECORDING_RULES = {"instance_status:rush_frames:rate5m", "instance_host:rush_frame_wall_seconds:rate1h",
                   "instance:royalrender_clients_rendering:ratio"}
# Labels with a value per host, client, user, project, layer or file: up to thousands of series.
PER_THING = re.compile(r"\{\{\s*(?:host|client|user|project|layer|path)\s*\}\}")


def tool(name):
    path = shutil.which(name)
    assert path, "%s is missing: scripts/test installs it (Debian package)" % name
    return path


def run(*command, cwd=None, timeout=120):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ecosystem
def test_rules_pass_promtool_check_and_unit_tests():
    checked = run(tool("promtool"), "check", "rules", RULES)
    assert checked.returncode == 0 and "SUCCESS: 22 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = run(tool("promtool"), "test", "rules", "renderfarm-exporter.rules.test.yml", cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_test():
    with open(RULES) as handle:
        alerts = {r["alert"] for g in yaml.safe_load(handle)["groups"] for r in g["rules"] if "alert" in r}
    with open(os.path.join(PROMETHEUS_DIR, "renderfarm-exporter.rules.test.yml")) as handle:
        tests = yaml.safe_load(handle)["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    assert alerts == fired


def _anchor(heading):
    """The anchor GitHub and GitLab give a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _alerts_doc():
    """docs/alerts.md as its text and its level-2 sections: {anchor: (heading, body)}."""
    with open(ALERTS_DOC) as handle:
        text = handle.read()
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return text, {_anchor(h): (h, body) for h, body in zip(parts[1::2], parts[2::2])}


def _runbook_queries(text):
    return [textwrap.dedent(q) for q in re.findall(r"^ *```promql\n(.*?)^ *```$", text, re.M | re.S)]


def _rules():
    with open(RULES) as handle:
        return [rule for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]]


def _dashboard_targets():
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _used_metrics():
    exprs = [r["expr"] for r in _rules()]
    exprs += [t["expr"] for _, t in _dashboard_targets()]
    with open(DASHBOARD) as handle:
        exprs += [v["definition"] for v in json.load(handle)["templating"]["list"] if "definition" in v]
    # Recording rules' names (level:metric:operations) are not the exporter's metrics.
    return {name for expr in exprs for name in METRIC.findall(RECORDED.sub(" ", expr))}


def test_every_alert_has_a_runbook_url_to_its_section_in_docs_alerts_md():
    _, sections = _alerts_doc()
    alerts = [r for r in _rules() if "alert" in r]
    for rule in alerts:
        link = re.fullmatch(r"docs/alerts\.md#([a-z0-9-]+)", rule["annotations"]["runbook_url"])
        assert link and link.group(1) == rule["alert"].lower(), (rule["alert"], rule["annotations"]["runbook_url"])
        heading, body = sections[link.group(1)]
        assert heading == rule["alert"]
        assert all(part in body for part in RUNBOOK_PARTS) and "```promql" in body, heading
    # One runbook section per alert, none for an alert that does not exist.
    runbooks = {heading for heading, body in sections.values() if RUNBOOK_PARTS[0] in body}
    assert runbooks == {r["alert"] for r in alerts} and len(alerts) == 19


def test_alerts_doc_starts_with_contents_whose_links_resolve():
    text, sections = _alerts_doc()
    assert list(sections)[0] == "contents"
    contents = sections["contents"][1]
    linked = re.findall(r"\]\(#([^)]+)\)", contents)
    assert sorted(linked) == sorted(anchor for anchor in sections if anchor != "contents")
    in_page = re.findall(r"\]\(#([^)]+)\)", text)
    assert set(in_page) <= set(sections)
    files = [link for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)]
    assert files and all(os.path.exists(os.path.join(REPO, "docs", link)) for link in files), files


@pytest.mark.ecosystem
def test_runbook_queries_are_valid_promql_over_served_metrics(tmp_path, demo_exposition):
    text, _ = _alerts_doc()
    queries = _runbook_queries(text)
    assert len(queries) == 29
    # promtool parses each query as the expression of a recording rule.
    checked = tmp_path / "runbook-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "runbook", "rules": [
        {"record": "runbook:query_%d" % i, "expr": q} for i, q in enumerate(queries)]}]}))
    result = run(tool("promtool"), "check", "rules", str(checked))
    assert result.returncode == 0 and "SUCCESS: 29 rules found" in result.stdout, result.stdout + result.stderr
    served = {line.split("{")[0].split(" ")[0] for line in demo_exposition.splitlines()
              if line and not line.startswith("#")}
    used = {name for q in queries for name in METRIC.findall(re.sub(r'"[^"]*"', '""', q))}  # not label values
    assert "rush_job_title_frames_total" in used and sorted(used - served) == []


@pytest.mark.ecosystem
def test_runbook_url_rewrite_in_docs_alerts_md_leaves_valid_rules(tmp_path):
    text, _ = _alerts_doc()
    (command,) = [line for line in text.splitlines() if line.startswith("sed -i ")]
    installed = tmp_path / "renderfarm-exporter.rules.yml"
    shutil.copy(RULES, installed)
    command = command.replace("/etc/prometheus/renderfarm-exporter.rules.yml", str(installed))
    assert str(installed) in command
    rewritten = run("bash", "-c", command)
    assert rewritten.returncode == 0, rewritten.stderr
    checked = run(tool("promtool"), "check", "rules", str(installed))
    assert checked.returncode == 0 and "SUCCESS: 22 rules found" in checked.stdout, checked.stdout + checked.stderr
    with open(installed) as handle:
        alerts = [r for g in yaml.safe_load(handle)["groups"] for r in g["rules"] if "alert" in r]
    assert {r["annotations"]["runbook_url"] for r in alerts} == {
        "https://git.example.com/renderfarm-exporter/-/blob/main/docs/alerts.md#" + r["alert"].lower()
        for r in alerts}


def test_dashboard_and_rules_query_only_metrics_the_exporter_serves(demo_exposition):
    served = {line.split("{")[0].split(" ")[0] for line in demo_exposition.splitlines()
              if line and not line.startswith("#")}
    used = _used_metrics()
    assert {"rush_frames_total", "royalrender_clients", "royalrender_client_wol_last_success",
            "renderfarm_exporter_source_up", "royalrender_render_app_render_licenses_needed"} <= used
    assert sorted(used - served) == []


def test_dashboard_is_provisioning_ready():
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    assert dashboard["uid"] == "renderfarm-exporter"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    with open(os.path.join(REPO, "config", "grafana", "provisioning", "dashboards", "renderfarm.yml")) as handle:
        assert yaml.safe_load(handle)["providers"][0]["type"] == "file"
    with open(os.path.join(REPO, "config", "grafana", "provisioning", "datasources", "renderfarm.yml")) as handle:
        datasources = yaml.safe_load(handle)["datasources"]
    # Provisioning it must not make it Grafana's default data source, nor take over one called "Prometheus".
    assert [(d["name"], d["type"], d["isDefault"]) for d in datasources] == [
        ("Render farm Prometheus", "prometheus", False)]


def test_dashboard_reads_every_recording_rule_and_only_recorded_ones():
    recorded = {r["record"] for r in _rules() if "record" in r}
    used = {name for _, t in _dashboard_targets() for name in RECORDED.findall(t["expr"])}
    assert recorded == used == RECORDING_RULES


def test_dashboard_panels_of_per_host_client_user_or_file_series_show_a_topk():
    limited = []
    for panel, target in _dashboard_targets():
        if PER_THING.search(target.get("legendFormat", "")):
            topk = re.match(r"topk\((\d+), ", target["expr"])
            assert topk and int(topk.group(1)) <= 20, (panel["title"], target["expr"])
            limited.append(panel["title"])
    assert len(limited) == 9, limited


@pytest.mark.ecosystem
def test_promtool_lints_the_full_exposition_clean(demo_exposition):
    lint = subprocess.run([tool("promtool"), "check", "metrics"], input=demo_exposition.encode(),
                          capture_output=True, timeout=60)
    assert lint.returncode == 0 and lint.stdout == b"" and lint.stderr == b"", lint.stdout + lint.stderr


def _query(url, expr):
    with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5) as r:
        answer = json.load(r)
    assert answer["status"] == "success"
    return answer["data"]["result"]


@pytest.mark.ecosystem
def test_real_prometheus_scrapes_the_demo_farm(tmp_path, start_daemon):
    exporter = start_daemon("--demo")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: ['%s']\n"
        "scrape_configs:\n  - job_name: renderfarm\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
        % (RULES, exporter.port))
    prometheus = subprocess.Popen(
        [tool("prometheus"), "--config.file", str(config), "--storage.tsdb.path", str(tmp_path / "data"),
         "--web.listen-address", "127.0.0.1:%d" % port, "--log.level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    try:
        def ok(expr):
            try:
                return bool(_query(url, expr))
            except OSError:
                return False

        wait_until(lambda: ok('up{job="renderfarm"} == 1'), 30, "the exporter to be scraped")
        wait_until(lambda: ok("sum(rate(rush_frames_total[10s])) > 0"), 30, "a growing Rush counter")
        hosts = _query(url, 'count(count by (host) (rush_frames_total{job="renderfarm"}))')
        assert float(hosts[0]["value"][1]) >= 30
        clients = _query(url, "sum(royalrender_clients)")
        assert float(clients[0]["value"][1]) == 24
        assert _query(url, 'royalrender_client_wol_last_success{client="rrclient001"}')
        # The recorded series keep job and instance, which the dashboard's Exporter variable selects.
        recorded = 'instance_status:rush_frames:rate5m{job="renderfarm", instance="127.0.0.1:%d"}' % exporter.port
        wait_until(lambda: ok(recorded), 30, "the recording rule")
        for name in sorted(RECORDING_RULES):
            wait_until(lambda: ok(name), 30, name)  # noqa: B023 - wait_until calls it before returning
        # Every dashboard query runs on the real Prometheus; a topk panel gets at most k series.
        answered = {}
        for panel, target in _dashboard_targets():
            expr = target["expr"].replace("$instance", ".*")
            result = _query(url, expr)
            topk = re.match(r"topk\((\d+), ", expr)
            assert len(result) <= (int(topk.group(1)) if topk else 100), (panel["title"], len(result))
            answered[panel["title"]] = len(result)
        assert answered["Frames per minute by status"] >= 3
        assert answered["Render hours per hour by host (top 20)"] == 20  # of the demo's 36 hosts
        assert answered["Log silence by host (longest 20)"] == 20
        assert answered["Clients rendering"] == 1
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)


def _dump_dom(url, profile):
    result = run(tool("chromium"), *CHROMIUM_FLAGS, "--user-data-dir=%s" % profile, "--dump-dom", url, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
