"""HTTP behaviour of the running daemon: paths, negotiation, gzip, methods, shutdown, port in use."""

import gzip
import json
import socket
import subprocess
import sys

from conftest import REPO, Daemon, parse_samples, value


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
