"""Work that may hang (a reload, a look at the web config file) on a thread of its own, watched by a deadline.

Whoever starts an ``Attempt`` waits for it at most until its deadline; past
that the attempt is *abandoned*: the waiter reports it and goes on, so the
daemon's one reload thread is never the thread that hangs. An abandoned
attempt cannot be interrupted (a read stuck in the kernel never returns to
Python); it keeps running until it ends by itself, says where it is
(``step``), and must check ``abandoned`` before it changes anything, so an
attempt given up on never applies a configuration behind a newer one's back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

log = logging.getLogger(__name__)


class Attempt:
    def __init__(self, what: str, work: Callable[[Attempt], Optional[str]],
                 on_end: Callable[[Attempt], None] = lambda attempt: None):
        """``work(attempt)``, run on a new thread by ``start``: it returns None on success, else why it failed.
        ``on_end(attempt)`` is called on that thread when the work has ended, in time or not."""
        self.what = what
        self.step = "starting"
        self.started = time.monotonic()
        self.abandoned = False
        self.outcome: Optional[str] = None
        self._on_end = on_end
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name="reload-attempt", daemon=True)

    def start(self) -> Attempt:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self, work: Callable[[Attempt], Optional[str]]) -> None:
        try:
            self.outcome = work(self)
        except Exception as exc:  # the outcome is reported by the waiter; nothing else may die
            log.exception("%s failed unexpectedly", self.what)
            self.outcome = "%s failed: %s" % (self.what, exc)
        finally:
            self._done.set()
            self._on_end(self)

    def wait(self, deadline: float) -> Optional[str]:
        """The outcome if the work ends within ``deadline`` seconds of its start; else the attempt is abandoned
        and the returned reason says where it is stuck."""
        if self._done.wait(max(0.0, self.started + deadline - time.monotonic())):
            return self.outcome
        self.abandoned = True
        if self._done.is_set():  # it ended in the meantime: in time after all
            self.abandoned = False
            return self.outcome
        return "%s abandoned: not finished within %g s, still %s" % (self.what, deadline, self.step)

    def given_up(self) -> bool:
        """Whether the waiter abandoned it (asked by the work before it changes anything)."""
        return self.abandoned

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def age(self) -> float:
        return time.monotonic() - self.started
