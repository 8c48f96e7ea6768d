"""SIGTERM / SIGINT without lost acknowledgements and without re-entrant drains.

The SDK's handler drains all sinks from inside the signal handler; a signal that lands during a
drain re-enters ``process_batch`` (meltano/sdk#3775). Here a signal never starts work. It either
stops the run at once (while reading input or waiting between retries), or, during a POST or while
an acknowledgement is being recorded, lets that finish and stops at the next ``check()``. A
second signal abandons an in-flight POST, but never interrupts the recording of an
acknowledgement.

"Right after" is the next ``check()``, not the end of the critical step: a critical step sits
inside bookkeeping (the ledger commit inside a batch's delivery); raising at its end would skip
the rest, and the STATE written on the way out would not cover a batch Planhat acknowledged.
Between an answer and the ledger commit that records it, a first signal waits too: the answer is
in hand, and dropping it there would re-send the batch on replay.

Nothing is written from the signal handler and it takes no lock, and it never raises inside the
``logging`` or ``threading`` packages. A signal can land while the main thread is writing a log
line: a second write from the handler, or an exception raised inside the handler's ``emit``, ends
in logging's ``handleError`` (a "--- Logging error ---" traceback on stderr) and the stop would be
swallowed there. It can land in ``threading.Condition.__enter__`` just after the lock was taken:
raised there, the ``with`` block is never entered and the lock is never released, and the next
thread to take it (the sender, a later signal's wake-up) waits forever. Such a signal is acted on
at the next ``check()`` (every wait of the main thread polls one: ``sender.py``, ``stdin.py``),
and logged where it is acted on. For the same reason ``sleep()`` polls the stop instead of waiting
on an ``Event``, whose ``set()`` from the handler would take the lock the interrupted code may
hold.

Threads: signals land in the main thread only. What a signal may interrupt is decided by the
state of the thread it lands in (critical steps and requests are tracked per thread), so the
main thread unwinds at once while the sender thread (``sender.py``) is mid-POST; the sender
notices the stop at its next ``check()`` or ``sleep()``, never inside a ledger commit, and the
main thread waits for it before writing STATE.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from types import FrameType

from target_planhat.errors import StopRequested

#: Packages a signal must not raise inside (see the module docstring).
_NOT_INSIDE = ("logging", "threading")
#: How often ``sleep()`` looks for a stop.
_POLL_SECONDS = 0.1


def _inside_unsafe(frame: FrameType | None) -> bool:
    """Whether ``frame`` (the code a signal interrupted) runs inside one of :data:`_NOT_INSIDE`."""
    while frame is not None:
        package = frame.f_globals.get("__name__", "").partition(".")[0]
        if package in _NOT_INSIDE:
            return True
        frame = frame.f_back
    return False


class _ThreadSteps(threading.local):
    """What the current thread is doing, as far as a signal is concerned."""

    critical = 0
    in_request = False
    answered = False  # a POST came back; its answer is not yet recorded


class _Critical:
    """``with guard.critical():``, one instance per guard (what it counts is per thread).

    A class rather than ``contextlib.contextmanager``: it is entered for every dead-letter line,
    and the generator's machinery cost twice as much per use (1.7 against 0.8 us).
    """

    __slots__ = ("_steps",)

    def __init__(self, steps: _ThreadSteps) -> None:
        self._steps = steps

    def __enter__(self) -> None:
        steps = self._steps
        steps.critical += 1
        steps.answered = False  # from here on the critical step protects the answer

    def __exit__(self, *exc_info: object) -> None:
        self._steps.critical -= 1


class ShutdownGuard:
    """Decides, when a signal arrives, whether to stop now or at the next ``check()``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.signals = 0  # how many arrived
        self._steps = _ThreadSteps()
        self._critical = _Critical(self._steps)

    @property
    def stopping(self) -> bool:
        return self.signum is not None

    def note(self, signum: int) -> bool:
        """Record a signal without acting on it; whether it is the first."""
        first = self.signum is None
        if first:
            self.signum = signum
        self.signals += 1
        return first

    def on_signal(self, signum: int, interrupted: FrameType | None = None) -> None:
        """Call from the signal handler (main thread); ``interrupted`` is the handler's frame."""
        first = self.note(signum)
        steps = self._steps
        if steps.critical:
            return  # recording an acknowledgement: stop when it is recorded
        if first and (steps.in_request or steps.answered):
            return  # let the in-flight POST finish (bounded by request_timeout) and be recorded
        if _inside_unsafe(interrupted):
            return  # raised there, logging would swallow it or a lock leak: next check() stops
        raise StopRequested(self.signum or signum)

    def check(self) -> None:
        """Raise if a signal arrived; call between steps, not between an answer and its record."""
        if self.signum is not None and not self._steps.critical:
            self._steps.answered = False
            raise StopRequested(self.signum)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` between retries; a signal (in any thread) ends the wait with a stop.

        Polls (no lock, no ``Event``): the handler then never takes a lock the code it interrupted
        may hold. Inside ``critical()`` a signal ends the wait early without raising.
        """
        self.check()
        deadline = time.monotonic() + seconds
        while self.signum is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _POLL_SECONDS))
        self.check()

    def release(self) -> None:
        """The answer that came back is no acknowledgement (not 2xx): nothing to protect."""
        self._steps.answered = False

    def critical(self) -> _Critical:
        """A step that must not be cut in half (ledger commit, STATE line, dead-letter line).

        A signal during it is acted on at the next ``check()``.
        """
        return self._critical

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """An HTTP request; when it comes back, its answer stays protected until ``critical()``
        (or ``check()``) takes over."""
        steps = self._steps
        steps.in_request = True
        steps.answered = False
        try:
            yield
        except BaseException:
            steps.in_request = False
            raise
        steps.answered = True
        steps.in_request = False
