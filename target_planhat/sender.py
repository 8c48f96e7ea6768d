"""One batch in flight: a thread delivers a batch while the main thread builds the next one.

The main thread reads, maps and validates; ``Sender`` runs each delivery (POST or dry-run write,
then the ledger commit) in a thread of its own, one at a time. Handing over a batch first waits
for the previous one, so at most one batch is in flight and one is being built: memory stays
bounded, and acknowledgements come in input order.

The main thread learns of a failed delivery at its next ``wait()`` or ``raise_failure()`` (next
drain, next message, end of input). Every wait polls with a timeout, so a signal handler in the
main thread runs promptly and may raise out of it; the delivery itself carries on in its thread
until its guard (``shutdown.py``) tells it to stop, and is never cut inside a ledger commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_POLL_SECONDS = 0.1


class Sender:
    def __init__(self, check: Callable[[], None] | None = None) -> None:
        self._check = check  # called while ``wait()`` polls: a deferred signal stops the wait
        self._cond = threading.Condition()
        self._job: Callable[[], None] | None = None  # set from hand-over until it has finished
        #: What the last delivery raised, until ``raise_failure()`` raises it.
        self.failure: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` in the sender thread once the previous one has finished (and succeeded)."""
        self.wait()
        with self._cond:
            if self._closed:
                raise RuntimeError("the sender is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="planhat-sender")
                self._thread.daemon = True
                self._thread.start()
            self._job = job
            self._cond.notify_all()

    def wait(self) -> None:
        """Block until no delivery is in flight, then raise its failure if it failed."""
        self.wait_idle(check=self._check)
        self.raise_failure()

    def wait_idle(
        self, timeout: float | None = None, check: Callable[[], None] | None = None
    ) -> bool:
        """Block until no delivery is in flight (or ``timeout``); a signal may raise out of it,
        and so may ``check``, called at every poll."""
        with self._cond:
            if timeout is None:
                while self._job is not None:
                    if check is not None:
                        check()
                    self._cond.wait(_POLL_SECONDS)
                return True
            return self._cond.wait_for(lambda: self._job is None, timeout)

    def raise_failure(self) -> None:
        """Raise (once) the exception a delivery ended with."""
        error = self.failure
        if error is not None:
            self.failure = None
            raise error

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                job = self._job
            if job is None:
                return
            try:
                job()
            except BaseException as exc:  # handed to the main thread, which reports it
                self.failure = exc
            finally:
                with self._cond:
                    self._job = None
                    self._cond.notify_all()

    def close(self) -> None:
        """Let the thread end once idle (call after ``wait_idle``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
