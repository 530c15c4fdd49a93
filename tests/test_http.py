"""HTTP behaviour of the running daemon: paths, negotiation, gzip, methods, shutdown, port in use."""

import gzip
import json
import socket
import subprocess
import sys

import pytest
from conftest import REPO, Daemon, parse_samples, value

pytestmark = pytest.mark.daemon


def rush_daemon(start_daemon, write_config, tmp_path, *extra):
    path = tmp_path / "cpu.acct"
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\n")
    return start_daemon("--config", write_config("rush:\n  cpu_acct: ['%s']\n" % path), *extra)


def test_paths_and_content_negotiation(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    status, headers, body = daemon.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"href='/metrics'" in body
    assert daemon.get("/-/healthy")[:1] == (200,)
    assert daemon.get("/-/ready")[0] == 200
    assert daemon.get("/nothing-here")[0] == 404

    status, headers, text = daemon.get("/metrics")
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert value(parse_samples(text.decode()), "rush_frames_total", host="render01", status="done") == 1

    _, headers, zipped = daemon.get("/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == text

    openmetrics_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    _, headers, body = daemon.get("/metrics", {"Accept": openmetrics_accept})
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n") and b"# TYPE rush_frames counter\n" in body
    _, headers, zipped = daemon.get("/metrics", {"Accept": openmetrics_accept, "Accept-Encoding": "gzip, br"})
    assert gzip.decompress(zipped) == body


#: (Accept, OpenMetrics?): q-values as RFC 9110 weighs them, names case-insensitive, q=0 not acceptable.
ACCEPT_CASES = [
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),  # Prometheus 2
    ("application/openmetrics-text;q=0", False),
    ("Application/OpenMetrics-Text; Q=0", False),
    ("application/openmetrics-text;q=0.000", False),
    ("application/openmetrics-text;q=0.001", True),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,"
     "application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,"
     "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05", True),  # 3
    ("application/openmetrics-text;version=0.0.1, text/plain;q=0.1", False),  # a version not served: no match
    ("application/openmetrics-text;version=1.0.0;q=0, application/openmetrics-text", False),  # the exact one
    ("application/openmetrics-text;q=0.2, application/openmetrics-text;q=0.9, text/plain;q=0.5", True),
    ("application/openmetrics-text;q=0.5, text/plain", False),  # the higher q wins
    ("text/plain;q=0.5, application/openmetrics-text", True),
    ("application/openmetrics-text;q=0, */*", False),  # the most specific range decides
    ("application/*", True),
    ("*/*", False),
    ("text/plain, application/openmetrics-text", False),  # equal q: the one listed first
    ("application/openmetrics-text, text/plain", True),
    ("application/openmetrics-text;q=abc", False),  # a bad q: the range is ignored
    ("application/openmetrics-text;q=2", False),
    ('application/openmetrics-text;x="a,b;q=0";q=0.9, text/plain;q=0.5', True),  # quoted parameters
    ("", False),
]
#: (Accept-Encoding, gzip?)
ENCODING_CASES = [
    ("gzip", True), ("GZIP", True), ("GZIP;Q=0", False), ("gzip ; q=0.0", False), ("br, gzip;q=0.8", True),
    ("x-gzip", True), ("*", True), ("*;q=0", False), ("gzip;q=0.5, identity", False),
    ("gzip, identity;q=0.5", True), ("gzip;q=1.5", False), ("gzip;q=0.0001", False), ("identity", False),
    ("deflate, gzip;q=0.1, *;q=0", True), ("", False),
]


def test_negotiation_weighs_q_values_as_rfc_9110_does(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    for accept, wanted in ACCEPT_CASES:
        status, headers, body = daemon.get("/metrics", {"Accept": accept} if accept else {})
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text" if wanted else "text/plain"), accept
        assert body.endswith(b"# EOF\n") is wanted, accept
        assert (b"# TYPE rush_frames counter\n" if wanted else b"# TYPE rush_frames_total counter\n") in body
    for encoding, wanted in ENCODING_CASES:
        status, headers, body = daemon.get("/metrics", {"Accept-Encoding": encoding})
        assert status == 200
        assert headers.get("Content-Encoding") == ("gzip" if wanted else None), encoding
        text = (gzip.decompress(body) if wanted else body).decode()
        assert value(parse_samples(text), "rush_frames_total", host="render01", status="done") == 1, encoding


def test_only_get_and_head(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 405")
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head and body == b""


def test_custom_telemetry_path(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path, "--web.telemetry-path", "/farm-metrics")
    assert daemon.get("/farm-metrics")[0] == 200
    assert daemon.get("/metrics")[0] == 404


def test_sigterm_exits_cleanly_within_two_seconds(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    took = daemon.stop()
    assert daemon.proc.returncode == 0
    assert took < 2.0, "shutdown took %.2fs" % took
    assert "shutting down" in daemon.log()


def test_port_in_use_fails_with_a_message(tmp_path, write_config):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config("rush:\n  cpu_acct: ['%s']\n" % (tmp_path / "cpu.acct"))
        result = subprocess.run([sys.executable, "-m", "exporter", "--config", config,
                                 "--web.listen-address", "127.0.0.1:%d" % port],
                                cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "127.0.0.1:%d" % port in result.stderr


def test_json_logs(tmp_path, write_config):
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % (tmp_path / "cpu.acct"))
    daemon = Daemon(["--config", config, "--log.format", "json"])
    try:
        daemon.wait_ready()
    finally:
        daemon.stop()
    records = [json.loads(line) for line in daemon.log().splitlines()]
    listening = [r for r in records if r["msg"] == "listening"]
    assert listening and listening[0]["level"] == "info" and listening[0]["address"].endswith(":%d" % daemon.port)
