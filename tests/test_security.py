"""--web.config.file on the real daemon: TLS, mTLS, basic auth, headers, live re-read; request limits."""

import base64
import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import bcrypt
import pytest
import trustme
from conftest import REPO, parse_samples, value, wait_until

from exporter.web import basicauth, httpserver

pytestmark = pytest.mark.daemon

PASSWORD = "s3cret-farm"
# Cost 4 keeps the suite fast; the cache is what spares scrapes the cost, whatever it is.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def certs(tmp_path, ca):
    """Server certificate for 127.0.0.1, the CA that signed it, and a client certificate from the same CA."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp_path / "server.crt"), append=True)
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    client = ca.issue_cert("prometheus@farm")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    return tmp_path


def rush_config(tmp_path, write_config):
    path = tmp_path / "cpu.acct"
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\n")
    return write_config("rush:\n  cpu_acct: ['%s']\n" % path)


def write_web(tmp_path, text):
    path = tmp_path / "web.yml"
    path.write_text(text)
    return str(path)


def client_context(ca, client_pem=None, maximum=None):
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_pem:
        context.load_cert_chain(client_pem)
    if maximum:
        context.maximum_version = maximum
    return context


def https_get(daemon, path, context, headers=None):
    conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read(), conn.sock.getpeercert()
    finally:
        conn.close()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}


def test_tls_serves_metrics_and_refuses_plain_http(tmp_path, certs, ca, start_daemon, write_config):
    web = write_web(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web, ready=False)
    wait_until(lambda: _https_ok(daemon, client_context(ca)), 20, "https /-/ready")
    status, _, body, _ = https_get(daemon, "/metrics", client_context(ca))
    assert status == 200 and b'rush_frames_total{host="render01",status="done"} 1.0' in body
    with pytest.raises((http.client.HTTPException, OSError)):
        plain = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
        plain.request("GET", "/metrics")
        plain.getresponse().read()


def _https_ok(daemon, context):
    if daemon.proc.poll() is not None:
        raise AssertionError(daemon.log())
    try:
        return https_get(daemon, "/-/ready", context)[0] == 200
    except OSError:
        return False


def test_tls_min_version_refuses_older_clients(tmp_path, certs, ca, start_daemon, write_config):
    web = write_web(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                              "  min_version: TLS13\n")
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web, ready=False)
    wait_until(lambda: _https_ok(daemon, client_context(ca)), 20, "https /-/ready")
    with pytest.raises(ssl.SSLError):
        https_get(daemon, "/metrics", client_context(ca, maximum=ssl.TLSVersion.TLSv1_2))


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path, certs, ca, start_daemon, write_config):
    web = write_web(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                              "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n")
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web, ready=False)
    with_cert = client_context(ca, str(certs / "client.pem"))
    wait_until(lambda: _https_ok(daemon, with_cert), 20, "https /-/ready with a client certificate")
    assert https_get(daemon, "/metrics", with_cert)[0] == 200

    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(daemon, "/metrics", client_context(ca))
    stranger = trustme.CA().issue_cert("intruder")
    stranger.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "stranger.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(daemon, "/metrics", client_context(ca, str(tmp_path / "stranger.pem")))
    assert https_get(daemon, "/metrics", with_cert)[0] == 200, "failed handshakes leave the server serving"


def test_basic_auth_guards_data_but_not_health(tmp_path, start_daemon, write_config):
    web = write_web(tmp_path, "basic_auth_users:\n  prometheus: '%s'\n"
                              "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                              "    x-content-type-options: nosniff\n" % HASH)
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web)
    for path in ("/metrics", "/"):
        for headers in ({}, basic("prometheus", "wrong"), basic("nobody", PASSWORD),
                        {"Authorization": "Basic !!notbase64"}, {"Authorization": "Bearer " + PASSWORD}):
            status, reply_headers, body = daemon.get(path, headers)
            assert status == 401, (path, headers)
            assert reply_headers["WWW-Authenticate"].startswith("Basic realm=")
            assert b"rush" not in body and b"render01" not in body and b"cpu.acct" not in body
            assert reply_headers["X-Frame-Options"] == "deny"
    status, headers, body = daemon.get("/metrics", basic("prometheus", PASSWORD))
    assert status == 200 and b"render01" in body
    assert headers["X-Frame-Options"] == "deny" and headers["X-Content-Type-Options"] == "nosniff"
    assert daemon.get("/", basic("prometheus", PASSWORD))[0] == 200
    assert daemon.get("/-/healthy")[0] == 200 and daemon.get("/-/ready")[0] == 200

    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)  # one keep-alive connection
    conn.request("HEAD", "/metrics")
    response = conn.getresponse()
    assert response.status == 401 and response.read() == b""
    conn.request("GET", "/metrics", headers=basic("prometheus", PASSWORD))
    assert conn.getresponse().read().count(b"render01") >= 1, "the connection survives a HEAD refused"
    conn.close()


def test_web_config_is_reread_and_a_broken_change_keeps_the_old_one(tmp_path, start_daemon, write_config):
    web = write_web(tmp_path, "basic_auth_users:\n  prometheus: '%s'\n" % HASH)
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web)
    assert daemon.get("/metrics", basic("grafana", PASSWORD))[0] == 401

    write_web(tmp_path, "basic_auth_users:\n  prometheus: '%s'\n  grafana: '%s'\n" % (HASH, HASH))
    wait_until(lambda: daemon.get("/metrics", basic("grafana", PASSWORD))[0] == 200, 10, "the new user")
    assert "web config file reloaded" in daemon.log()

    write_web(tmp_path, "basic_auth_users:\n  grafana: not-a-hash\n")
    wait_until(lambda: "keeping the previous settings" in daemon.log(), 10, "the broken change to be noticed")
    assert "basic_auth_users.grafana" in daemon.log()
    assert daemon.get("/metrics", basic("grafana", PASSWORD))[0] == 200
    assert daemon.get("/metrics")[0] == 401


def test_a_renewed_certificate_is_served_without_restart(tmp_path, certs, ca, start_daemon, write_config):
    web = write_web(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web, ready=False)
    wait_until(lambda: _https_ok(daemon, client_context(ca)), 20, "https /-/ready")
    first_serial = https_get(daemon, "/-/healthy", client_context(ca))[3]["serialNumber"]

    renewed = ca.issue_cert("127.0.0.1")
    renewed.private_key_pem.write_to_path(str(tmp_path / "server.key.new"))
    renewed.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt.new"))
    os.replace(tmp_path / "server.key.new", tmp_path / "server.key")
    os.replace(tmp_path / "server.crt.new", tmp_path / "server.crt")

    def serial():
        try:
            return https_get(daemon, "/-/healthy", client_context(ca))[3]["serialNumber"]
        except OSError:
            return None

    wait_until(lambda: serial() not in (None, first_serial), 10, "the renewed certificate")


TLS_AND_AUTH = ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
                "basic_auth_users:\n  prometheus: '%s'\n" % HASH)


def replace_web(tmp_path, text):
    """Rewrites web.yml atomically, so the daemon sees exactly one change."""
    (tmp_path / "web.yml.new").write_text(text)
    os.replace(tmp_path / "web.yml.new", tmp_path / "web.yml")


def web_reloads(daemon, context):
    status, _, body, _ = https_get(daemon, "/metrics", context, basic("prometheus", PASSWORD))
    assert status == 200
    samples = parse_samples(body.decode())
    return (value(samples, "renderfarm_exporter_web_config_reloads_total"),
            value(samples, "renderfarm_exporter_web_config_reload_failures_total"),
            value(samples, "renderfarm_exporter_web_config_last_reload_successful"))


@pytest.mark.parametrize("change", [
    "",  # emptied
    "# TLS and users moved elsewhere\n",  # only comments
    "basic_auth_users:\n  prometheus: '%s'\n" % HASH,  # TLS section dropped
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",  # users dropped
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    "basic_auth_users:\n  prometheus: '%s'\n" % HASH,  # client certificates no longer required
    TLS_AND_AUTH[:len(TLS_AND_AUTH) // 2],  # a non-atomic rewrite caught half-way
    "tls_server_config: [",  # not YAML
], ids=["emptied", "comments", "no-tls", "no-users", "no-client-certs", "half-written", "invalid"])
def test_a_live_change_never_turns_tls_or_auth_off(tmp_path, certs, ca, start_daemon, write_config, change):
    web = write_web(tmp_path, TLS_AND_AUTH)
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web, ready=False)
    with_cert = client_context(ca, str(certs / "client.pem"))
    wait_until(lambda: _https_ok(daemon, with_cert), 20, "https /-/ready")
    assert web_reloads(daemon, with_cert) == (0, 0, 1)

    replace_web(tmp_path, change)
    wait_until(lambda: web_reloads(daemon, with_cert) == (1, 1, 0), 10, "the change to be refused")
    assert "web config change REFUSED; keeping the previous settings" in daemon.log()
    assert https_get(daemon, "/metrics", with_cert)[0] == 401, "basic auth still required"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(daemon, "/metrics", client_context(ca))  # the client certificate still required
    with pytest.raises((http.client.HTTPException, OSError)):
        plain = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
        plain.request("GET", "/metrics")
        plain.getresponse().read()

    replace_web(tmp_path, TLS_AND_AUTH.replace("prometheus:", "grafana: '%s'\n  prometheus:" % HASH))
    wait_until(lambda: web_reloads(daemon, with_cert) == (2, 1, 1), 10, "a change of users to be taken")
    assert https_get(daemon, "/metrics", with_cert, basic("grafana", PASSWORD))[0] == 200


@pytest.mark.parametrize("text, where", [
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  client_auth_type: RequireAnyClientCert\n", "tls_server_config.client_auth_type"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "tls_server_config.cert_file"),
    ("tls_server_config:\n  key_file: server.key\n", "tls_server_config.cert_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [x]\n",
     "tls_server_config.cipher_suites"),
    ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus"),
    ("basic_auth_users:\n  prometheus: '%s'\n" % HASH.replace("$04$", "$15$"), "bcrypt cost 15 is outside 4..14"),
    ("http_server_config:\n  headers:\n    Set-Cookie: a=b\n", "http_server_config.headers.Set-Cookie"),
])
def test_invalid_web_config_is_refused_at_start_with_the_key_path(tmp_path, certs, write_config, text, where):
    web = write_web(tmp_path, text)
    result = subprocess.run([sys.executable, "-m", "exporter", "--config", rush_config(tmp_path, write_config),
                             "--web.config.file", web, "--check-config"],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and where in result.stderr, result.stderr


def test_a_costly_hash_delays_neither_start_nor_health(tmp_path, start_daemon, write_config):
    """Cost 14, the highest accepted: the dummy hash for unknown users is made at load without hashing."""
    costly = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=basicauth.MAX_COST)).decode()
    started = time.monotonic()
    basicauth.BasicAuth({"prometheus": costly})
    assert time.monotonic() - started < 0.5, "loading hashed nothing (a cost-14 hash takes about a second)"
    web = write_web(tmp_path, "basic_auth_users:\n  prometheus: '%s'\n" % costly)
    daemon = start_daemon("--config", rush_config(tmp_path, write_config), "--web.config.file", web)
    guesses = [threading.Thread(target=daemon.get, args=("/metrics", basic(user, "guess")))
               for user in ("nobody", "prometheus")]
    for guess in guesses:
        guess.start()
    checked = time.monotonic()
    assert daemon.get("/-/healthy")[0] == 200
    assert time.monotonic() - checked < 2.0, "/-/healthy waited for the bcrypt checks (each takes about 1 s)"
    for guess in guesses:
        guess.join()


def test_ambiguous_framing_is_a_bad_request(tmp_path, start_daemon, write_config):
    daemon = start_daemon("--config", rush_config(tmp_path, write_config))
    for head in (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
                 b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
                 b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length :0\r\n\r\n"):
        reply = raw_exchange(daemon.port, head)
        assert reply.startswith(b"HTTP/1.1 400") and b"rush_" not in reply, head
    assert daemon.get("/metrics")[0] == 200


def test_verdicts_are_cached_so_scrapes_do_not_pay_bcrypt(monkeypatch):
    real = bcrypt.checkpw
    calls = []
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: calls.append(a) or real(*a))
    auth = basicauth.BasicAuth({"prometheus": HASH})
    header = basic("prometheus", PASSWORD)["Authorization"]
    assert all(auth.allows(header) for _ in range(50))
    assert not any(auth.allows(basic("prometheus", "guess")["Authorization"]) for _ in range(50))
    assert not auth.allows(basic("nobody", PASSWORD)["Authorization"])
    assert len(calls) == 3, "one bcrypt check per distinct credential"
    assert not auth.allows(basic("prometheus", "x" * 100)["Authorization"]), "over bcrypt's 72 bytes"


# -- request limits -------------------------------------------------------------


def raw_exchange(port, data, read_timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            reply += chunk
        return reply


def test_oversized_heads_bodies_and_odd_methods_are_refused(tmp_path, start_daemon, write_config):
    daemon = start_daemon("--config", rush_config(tmp_path, write_config))
    huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20)) + b"\r\n"
    assert raw_exchange(daemon.port, huge).startswith(b"HTTP/1.1 431")
    reply = raw_exchange(daemon.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert reply.startswith(b"HTTP/1.1 413") and b"rush_" not in reply
    reply = raw_exchange(daemon.port,
                         b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413")
    for method in (b"TRACE", b"PUT", b"DELETE", b"OPTIONS"):
        assert raw_exchange(daemon.port, method + b" /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                            ).startswith(b"HTTP/1.1 405"), method
    assert raw_exchange(daemon.port, b"BREW /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        ).startswith(b"HTTP/1.1 501")
    assert raw_exchange(daemon.port, b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        ).startswith(b"HTTP/1.1 404")
    assert daemon.get("/metrics")[0] == 200


def test_a_slow_client_neither_blocks_scrapes_nor_holds_on(tmp_path, start_daemon, write_config):
    daemon = start_daemon("--config", rush_config(tmp_path, write_config))
    slow = socket.create_connection(("127.0.0.1", daemon.port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    closed_at = None
    slow.settimeout(0.5)
    while time.monotonic() - started < httpserver.HEAD_TIMEOUT + 5:
        assert daemon.get("/metrics")[0] == 200, "scrapes go on beside the slow client"
        try:
            slow.sendall(b"X")  # one byte at a time, never finishing the head
            if slow.recv(1) == b"":
                closed_at = time.monotonic() - started
                break
        except socket.timeout:
            continue
        except OSError:
            closed_at = time.monotonic() - started
            break
    slow.close()
    assert closed_at is not None, "the slow client was never dropped"
    assert closed_at < httpserver.HEAD_TIMEOUT + 2
