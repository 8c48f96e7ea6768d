"""What Planhat has acknowledged, by input position, and so which STATE may be written.

The product's one guarantee lives here: a STATE is written only once every record read before it
has been acknowledged. Positions count RECORD messages: the record read N-th is at position N,
and a STATE read after N records is at position N. It may be written once nothing at positions
1..N is still unacknowledged.

Whatever keeps input not yet acknowledged is a *holder* and reports here: a batch being built
(one per sink), the batch in flight in the sender thread, and any later channel that must be
acknowledged before STATE moves (metric points, held activities stored). Each holder holds from
its first unacknowledged position on; the first unacknowledged position of the run is the
smallest of them. Acknowledgement is per input position, whichever channel acknowledged it: a
record sent as an activity and counted in a metric point is acknowledged when neither holder
holds it any more. Holders acknowledge in input order; one whose acknowledgements come out of
order reports the oldest position it still holds.

The SDK's STATE timing (only at the end of ``drain_all()``) does not decide anything here: the
target asks ``writable()`` after acknowledgements, after a STATE, at its checkpoint ticks and on
the way out, and writes what it answers.

Threads: the sender thread reports acknowledgements while the main thread reads and asks; every
change of the holders happens under one lock. A signal handler may raise between any two steps
of the main thread; every step that moves a position moves it to where nothing unacknowledged
can look acknowledged (``handed_over`` holds the new place before it lets go of the old one).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

IN_FLIGHT = "in flight"
"""The holder for the batch in the sender thread (at most one batch is in flight)."""


@dataclass(frozen=True)
class Checkpoint:
    """A STATE message and the input position it was read at."""

    position: int
    state: dict
    arrived: float  # time.monotonic() when it (or an earlier STATE at the same position) came


class Checkpoints:
    """Told where STATE arrived and what is acknowledged; answers which STATE may be written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: deque[Checkpoint] = deque()  # not yet written, oldest first
        self._holds: dict[Hashable, int] = {}  # holder -> first unacknowledged position
        self._since: dict[Hashable, float] = {}  # holds a drain would hand over: opened when
        self._last_written: dict | None = None
        self._news = False

    # --- told ------------------------------------------------------------------------------

    def state_arrived(self, position: int, state: dict, now: float | None = None) -> None:
        """A STATE message was read after ``position`` records."""
        arrived = time.monotonic() if now is None else now
        with self._lock:
            states = self._states
            if states and states[-1].position == position:
                # No record between two STATEs: the newer one says all; keep the older's age.
                arrived = states.pop().arrived
            states.append(Checkpoint(position, copy.deepcopy(state), arrived))
            self._news = True

    def holding(self, holder: Hashable, position: int, now: float | None = None) -> None:
        """``holder`` keeps input from ``position`` on, not yet acknowledged.

        For a batch being built: called with its first record; later calls while it still holds
        change nothing. ``now`` (default: the clock) is when the wait began, for
        :meth:`waiting_since`: such a hold ends by a drain.
        """
        with self._lock:
            if holder not in self._holds:
                self._since[holder] = time.monotonic() if now is None else now
                self._holds[holder] = position

    def handed_over(self, holder: Hashable, to: Hashable = IN_FLIGHT) -> None:
        """What ``holder`` held now waits in ``to`` (a batch handed to the sender thread)."""
        with self._lock:
            position = self._holds.get(holder)
            if position is None:
                return
            current = self._holds.get(to)
            self._holds[to] = position if current is None else min(current, position)
            del self._holds[holder]
            self._since.pop(holder, None)

    def acknowledged(self, holder: Hashable = IN_FLIGHT, up_to: int | None = None) -> None:
        """Everything ``holder`` held before position ``up_to`` is acknowledged; ``None``: all
        of it (or it was all duplicates, filtered, or the batch was empty)."""
        with self._lock:
            if up_to is None:
                self._holds.pop(holder, None)
                self._since.pop(holder, None)
            elif holder in self._holds:
                self._holds[holder] = max(self._holds[holder], up_to)
            self._news = True

    # --- asked -----------------------------------------------------------------------------

    @property
    def news(self) -> bool:
        """Whether a STATE or an acknowledgement came since :meth:`writable` last answered.

        Cheap, for the per-message check: only then can the answer have changed."""
        return self._news and bool(self._states)

    def first_unacknowledged(self) -> int | None:
        """The smallest position some holder still holds, or ``None``."""
        with self._lock:
            return min(self._holds.values(), default=None)

    def writable(self) -> Checkpoint | None:
        """The newest STATE whose every earlier record is acknowledged and that differs from the
        last one written, or ``None``. Write it, then call :meth:`written`."""
        with self._lock:
            self._news = False
            limit = min(self._holds.values(), default=None)
            newest: Checkpoint | None = None
            for checkpoint in self._states:
                if limit is not None and checkpoint.position >= limit:
                    break
                newest = checkpoint
        if newest is None:
            return None
        if newest.state == self._last_written:
            self.written(newest)  # nothing new to say: forget it and those before it
            return None
        return newest

    def written(self, checkpoint: Checkpoint) -> None:
        """``checkpoint`` is on stdout: forget it and every STATE before it.

        Called after the write, so a signal in between cannot lose a STATE; writing it twice is
        avoided by :meth:`writable` comparing with the last one written."""
        with self._lock:
            self._last_written = checkpoint.state
            states = self._states
            while states and states[0].position <= checkpoint.position:
                states.popleft()

    def waiting_since(self) -> float | None:
        """When the oldest unwritten STATE, or the oldest record waiting in a batch being
        built, arrived: the target drains once that is ``checkpoint_seconds`` ago."""
        with self._lock:
            times = list(self._since.values())
            if self._states:
                times.append(self._states[0].arrived)
        return min(times, default=None)
