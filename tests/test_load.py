"""100 concurrent scrapers while the demo farm's files change: no errors, nothing torn (bench/load.py)."""

import pytest
from conftest import free_port

from bench.load import check_exposition, hammer, run_demo_daemon, wait_ready

pytestmark = pytest.mark.inprocess


@pytest.mark.daemon
def test_a_hundred_concurrent_scrapers_get_whole_consistent_expositions():
    port = free_port()
    daemon = run_demo_daemon(port)
    try:
        wait_ready(port)
        result = hammer(port, scrapers=100, seconds=6.0)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    assert daemon.returncode == 0
    assert result.errors == []
    assert result.scrapes >= 100, "every scraper was served at least once"
    print("\n%d scrapes; p50 %.0f ms, p99 %.0f ms" % (result.scrapes, 1000 * result.percentile(0.5),
                                                       1000 * result.percentile(0.99)))


@pytest.mark.parametrize("body, openmetrics", [
    (b"# TYPE a counter\na_total 1.0\n", False),
    (b"# TYPE a counter\na_total 1.0\n# EOF\n", True),
])
def test_the_checker_accepts_whole_expositions(body, openmetrics):
    assert check_exposition(body, openmetrics) == {("a_total", ()): 1.0}


@pytest.mark.parametrize("body, openmetrics", [
    (b"# TYPE a counter\na_total 1.0", False),  # cut short
    (b"# TYPE a counter\na_total 1.0\n", True),  # no # EOF
    (b"# TYPE a counter\na_total 1.0\na_total 1.0\n", False),  # a series twice
    (b"# TYPE a counter\na_total 1.0\n# TYPE a counter\na_total 2.0\n", False),  # a family twice
])
def test_the_checker_catches_torn_or_doubled_expositions(body, openmetrics):
    with pytest.raises(ValueError):
        check_exposition(body, openmetrics)
