"""The debouncer's timing rules, on a fake clock: ``take(0)`` asks "what is released now?"."""

import random

from exporter.debounce import Debouncer

QUIET, MAX_WAIT = 0.02, 0.1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def debouncer_at(clock: FakeClock) -> Debouncer:
    return Debouncer(quiet=QUIET, max_wait=MAX_WAIT, clock=clock)


def test_a_path_is_released_after_its_quiet_time():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    debouncer.add("/a")
    clock.now += QUIET * 0.9
    assert debouncer.take(0) == (set(), False)
    clock.now += QUIET * 0.1
    assert debouncer.take(0) == ({"/a"}, False)
    assert debouncer.take(0) == (set(), False)


def test_a_burst_on_one_file_is_read_once():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    for _ in range(15):
        debouncer.add("/a")
        assert debouncer.take(0) == (set(), False)
        clock.now += 0.005
    clock.now += QUIET
    assert debouncer.take(0) == ({"/a"}, False)
    clock.now += 1.0
    assert debouncer.take(0) == (set(), False)


def test_a_file_that_never_goes_quiet_is_read_after_the_maximum_wait():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    started = clock.now
    released = set()
    while not released:
        debouncer.add("/busy")
        clock.now += 0.005
        released, _ = debouncer.take(0)
    assert released == {"/busy"} and MAX_WAIT <= clock.now - started < MAX_WAIT + 0.005


def test_every_pending_path_is_released_with_the_first_due():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    debouncer.add("/a")
    clock.now += 0.015
    debouncer.add("/b")
    clock.now += 0.004
    debouncer.add("/c")
    assert debouncer.take(0) == (set(), False)
    clock.now += 0.001
    assert debouncer.take(0) == ({"/a", "/b", "/c"}, False)


def test_a_steady_trickle_from_200_files_makes_few_batches_and_keeps_the_maximum_wait():
    """200 files, one line a second each, in a random order: 200 events a second, 2 per write."""
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    rng = random.Random(3)
    files = ["/farm/render%03d/cpu.acct" % i for i in range(200)]
    step, seconds = 0.001, 3.0
    first_event = {}
    batches, waits, released_at = 0, [], []
    for tick in range(int(seconds / step)):
        if tick % 5 == 0:  # one write every 5 ms
            path = rng.choice(files)
            first_event.setdefault(path, clock.now)
            debouncer.add(path)
            debouncer.add(path)  # a write is often seen as two events
        paths, rescan = debouncer.take(0)
        assert not rescan
        if paths:
            batches += 1
            released_at.append(clock.now)
            waits.extend(clock.now - first_event.pop(path) for path in paths)
        clock.now += step
    assert not first_event or max(clock.now - t for t in first_event.values()) <= MAX_WAIT
    assert len(waits) >= 500  # nearly one release per write: the paths differ
    assert max(waits) <= MAX_WAIT + step
    # one sync per path would be 600; batches are at least the quiet time apart
    assert batches <= seconds / QUIET + 1
    assert min(b - a for a, b in zip(released_at, released_at[1:])) >= QUIET - 1e-9


def test_a_rescan_is_released_at_once_and_takes_the_pending_paths_with_it():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    debouncer.add("/a")
    debouncer.request_rescan()
    assert debouncer.take(0) == ({"/a"}, True)
    assert debouncer.take(0) == (set(), False)
    clock.now += 1.0
    assert debouncer.take(0) == (set(), False)


def test_configure_applies_new_timings():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    debouncer.configure(quiet=0.5, max_wait=2.0)
    debouncer.add("/a")
    clock.now += QUIET
    assert debouncer.take(0) == (set(), False)
    clock.now += 0.5
    assert debouncer.take(0) == ({"/a"}, False)


def test_a_closed_debouncer_returns_at_once_without_a_batch_not_due():
    clock = FakeClock()
    debouncer = debouncer_at(clock)
    debouncer.add("/a")
    debouncer.close()
    assert debouncer.take(3600) == (set(), False)
    clock.now += QUIET
    assert debouncer.take(3600) == ({"/a"}, False)
