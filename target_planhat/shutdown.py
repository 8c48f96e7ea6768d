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
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class StopRequested(Exception):
    """Raised to unwind the run after SIGTERM/SIGINT; carries the signal number."""

    def __init__(self, signum: int) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        super().__init__(f"stopped by {name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class ShutdownGuard:
    """Decides, when a signal arrives, whether to stop now or at the next ``check()``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._critical = 0
        self._in_request = False
        self._answered = False  # a POST came back; its answer is not yet recorded

    @property
    def stopping(self) -> bool:
        return self.signum is not None

    def on_signal(self, signum: int) -> None:
        """Call from the signal handler (main thread)."""
        first = self.signum is None
        if first:
            self.signum = signum
        if self._critical:
            return  # recording an acknowledgement: stop when it is recorded
        if first and (self._in_request or self._answered):
            return  # let the in-flight POST finish (bounded by request_timeout) and be recorded
        raise StopRequested(self.signum or signum)

    def check(self) -> None:
        """Raise if a signal arrived; call between steps, not between an answer and its record."""
        if self.signum is not None and not self._critical:
            self._answered = False
            raise StopRequested(self.signum)

    def release(self) -> None:
        """The answer that came back is no acknowledgement (not 2xx): nothing to protect."""
        self._answered = False

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A step that must not be cut in half (ledger commit, STATE line, dead-letter line).

        A signal during it is acted on at the next ``check()``.
        """
        self._critical += 1
        self._answered = False  # from here on the critical step protects the answer
        try:
            yield
        finally:
            self._critical -= 1

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """An HTTP request; when it comes back, its answer stays protected until ``critical()``
        (or ``check()``) takes over."""
        self._in_request = True
        self._answered = False
        try:
            yield
        except BaseException:
            self._in_request = False
            raise
        self._answered = True
        self._in_request = False
