"""SIGTERM / SIGINT without lost acknowledgements and without re-entrant drains.

The SDK's handler drains all sinks from inside the signal handler; a signal that lands during a
drain re-enters ``process_batch`` (meltano/sdk#3775). Here a signal never starts work. It either
stops the run at once (while reading input or waiting between retries), or, during a POST or while
an acknowledgement is being recorded, lets that finish and stops right after. A second signal
abandons an in-flight POST, but never interrupts the recording of an acknowledgement.
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
    """Decides, when a signal arrives, whether to stop now or right after the current step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._critical = 0
        self._in_request = False

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
        if self._in_request and first:
            return  # let the in-flight POST finish (bounded by request_timeout)
        raise StopRequested(self.signum or signum)

    def check(self) -> None:
        """Raise if a signal arrived; call between steps."""
        if self.signum is not None and not self._critical:
            raise StopRequested(self.signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A step that must not be cut in half (ledger commit, STATE line, dead-letter line)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        self.check()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        self._in_request = True
        try:
            yield
        finally:
            self._in_request = False
