"""The event loop under connection floods and descriptor exhaustion, on the real daemon (loopback only)."""

import os
import resource
import socket

from bench.common import percentile
from bench.connections import measure, raise_nofile_limit
from conftest import wait_until


def rush_daemon(start_daemon, write_config, tmp_path):
    path = tmp_path / "cpu.acct"
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\n")
    return start_daemon("--config", write_config("rush:\n  cpu_acct: ['%s']\n" % path))


def open_descriptors(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_and_slowloris_connections_do_not_starve_scrapes(tmp_path, start_daemon, write_config):
    """The CI cut of ``python -m bench.connections`` (2,000 idle + 300 slowloris for 60 s, run by hand)."""
    raise_nofile_limit()
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    figures = measure(daemon.port, daemon.proc.pid, idle=1000, slow=150, seconds=10.0, scrapers=2)
    scrapes = figures.scrapes
    assert scrapes.ok >= 500, "scrapes kept going"
    assert scrapes.ratio >= 0.999, sorted(set(scrapes.failures))[:5]
    assert percentile(scrapes.latencies, 0.99) < 0.1
    assert figures.rss_max_mb - figures.rss_start_mb < 50, "memory stays bounded"
    assert daemon.proc.poll() is None


def test_idle_connections_beyond_the_descriptor_limit_make_room_for_scrapes(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    pid = daemon.proc.pid
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_descriptors(pid) + 40, hard))
    held = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(120)]
    try:
        for sock in held[::2]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # slowloris: a head begun, never finished
        statuses = [daemon.get("/metrics")[0] for _ in range(20)]
        assert statuses == [200] * 20, "each scrape took the place of the connection waiting longest"
        assert daemon.log().count("out of file descriptors") == 1, "logged once, not per connection"
    finally:
        for sock in held:
            sock.close()


def take_every_descriptor(pid):
    """Lowers the limit to the lowest free descriptor number, once no client connection is left open."""
    def only_own_sockets():  # the listener and the loop's wake-up pair
        links = [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)]
        return sum(link.startswith("socket:") for link in links) == 3

    wait_until(only_own_sockets, 5, "the readiness probes' connections to close")
    used = {int(fd) for fd in os.listdir("/proc/%d/fd" % pid)}
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(set(range(len(used) + 1)) - used), hard))


def test_the_reserve_serves_scrapes_when_every_descriptor_is_taken(tmp_path, start_daemon, write_config):
    """Files (or anything else) holding every descriptor: scrapes still get one, from the reserve."""
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    take_every_descriptor(daemon.proc.pid)
    statuses = [daemon.get(path)[0] for path in ("/metrics", "/-/healthy", "/-/ready") * 5]
    assert statuses == [200] * 15
    assert daemon.log().count("out of file descriptors") == 1


def test_with_no_descriptor_left_at_all_the_listener_backs_off_instead_of_spinning(tmp_path, start_daemon,
                                                                                    write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    pid = daemon.proc.pid
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))  # not even the reserve can take a connection
    waiting = socket.create_connection(("127.0.0.1", daemon.port))  # sits in the listen backlog
    waiting.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: "out of file descriptors" in daemon.log(), 5, "the exhaustion to be noticed")
    cpu_before, samples = cpu_seconds(pid), 0

    def observed_two_seconds():
        nonlocal samples
        samples += 1
        return samples >= 40  # 40 polls of 50 ms

    wait_until(observed_two_seconds, 5, "two seconds of observation")
    assert cpu_seconds(pid) - cpu_before < 0.5, "the accept loop spins"
    assert daemon.log().count("out of file descriptors") == 1

    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    waiting.settimeout(5)
    assert waiting.recv(100).startswith(b"HTTP/1.1 200"), "the waiting client is served once descriptors return"
    waiting.close()
    assert daemon.get("/metrics")[0] == 200
