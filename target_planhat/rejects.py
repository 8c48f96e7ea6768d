"""What happens to an activity that fails validation: ``on_invalid_record``.

``dead_letter`` keeps the record with its reason in a JSON-lines file, so nothing bad is sent
and nothing is dropped silently; ``skip`` only counts it; ``fail`` stops the run naming record
and reason.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import orjson

from target_planhat import redact
from target_planhat.errors import RejectedRecord as RejectedRecord

logger = logging.getLogger("target_planhat.rejects")

POLICIES = ("dead_letter", "skip", "fail")
#: Rejected lines held back (to be checked against what was written before) per settle.
_PENDING_MAX = 1000


class WrittenBefore(Protocol):
    """What remembers the (event id, reason) pairs already written (``rejected_ids.py``)."""

    def known(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None: ...


# (event id, reason, line, input position): a line held back; the position (the record's
# number in the input, None for lines of no record) lets a STATE's sync stop after its records.
Pending = tuple[str | None, str, bytes, int | None]
Pair = tuple[str, str]  # (event id, reason)

DEFAULT_DEAD_LETTER_PATH = "planhat-rejected.jsonl"
# A 50 MB record is kept as an excerpt: the dead-letter file must stay readable.
_MAX_KEPT_BYTES = 64 * 1024


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
# A rejected record may be what orjson cannot encode (lone surrogates, 300 levels of nesting):
# the stdlib then writes it, with anything deeper than this replaced by a marker.
_MAX_KEPT_DEPTH = 100


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=_OPTIONS)


def _clip(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with containers below ``_MAX_KEPT_DEPTH`` levels replaced by a marker."""
    if isinstance(value, dict):
        if depth >= _MAX_KEPT_DEPTH:
            return f"<object nested deeper than {_MAX_KEPT_DEPTH} levels>"
        return {str(k): _clip(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if depth >= _MAX_KEPT_DEPTH:
            return f"<array nested deeper than {_MAX_KEPT_DEPTH} levels>"
        return [_clip(v, depth + 1) for v in value]
    return value


def _json(value: Any) -> bytes:
    """Valid JSON for any record: orjson, else the stdlib with ``\\uXXXX`` escapes, else a note.

    The stdlib keeps a lone surrogate as its escape (the record as received) and writes NaN as
    ``NaN``, which is not JSON: non-finite numbers become ``null`` like orjson writes them.
    """
    try:
        return _encode(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        problem = str(exc)
    try:
        text = json.dumps(
            _finite(_clip(value)),
            ensure_ascii=True,
            default=str,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (ValueError, TypeError, RecursionError) as exc:
        return _encode({"unencodable": f"{problem}; {exc}"})
    return text.encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _kept(value: Any) -> bytes:
    """JSON of the value itself, or of a truncated excerpt when it is huge."""
    encoded = _json(value)
    if len(encoded) <= _MAX_KEPT_BYTES:
        return encoded
    return _encode(
        {
            "truncated": True,
            "original_bytes": len(encoded),
            "excerpt": encoded[:_MAX_KEPT_BYTES].decode("utf-8", errors="ignore"),
        }
    )


def _clock() -> Callable[[float], str]:
    """``now(seconds)``: the time as ``datetime.isoformat`` writes it in UTC, with ``Z``.

    Every dead-letter line carries it, and a run with many rejected records writes many lines
    a second: the date and time to the second are formatted once per second, only the
    microseconds per line (``datetime.now().isoformat()`` cost about 1.5 us a line). The unit
    test compares it with ``datetime``'s own text.
    """
    last: tuple[int, str] = (0, "1970-01-01T00:00:00")

    def now(seconds: float) -> str:
        nonlocal last
        whole = math.floor(seconds)
        micros = round((seconds - whole) * 1e6)  # rounded as datetime rounds it
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        cached = last
        if cached[0] != whole:
            moment = dt.datetime.fromtimestamp(whole, dt.timezone.utc)
            cached = last = (whole, moment.strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"

    return now


# What names a record in a message, by preference: its ids, then what it is about.
_HANDLES = ("$insert_id", "insert_id", "uuid", "event_id", "user_id", "event_type")


def describe(record: Any) -> str:
    """A short handle for a record in messages: its id when it has one."""
    if isinstance(record, dict):
        for key in _HANDLES:
            if record.get(key) not in (None, ""):
                return f"{key}={str(record[key])[:80]}"
    return "without id"


class DeadLetterFile:
    """Appends one JSON line per rejected record.

    Buffered, not flushed per line (a flush per line cost 5% of a run with 15% anonymous events):
    :meth:`sync` makes the lines durable before any STATE that covers their records is written,
    so a crash can only lose lines whose records the tap sends again.

    With ``written_before``, a line whose event id and reason were written in an earlier run is
    not written again; ``on_written_before(reason)`` counts it instead. Such lines wait in memory
    and are checked in one query when they are settled: by :meth:`sync` (with ``up_to``, those
    of the records a STATE covers), or, when a batch is handed over (:meth:`settle_soon`) and
    every ``_PENDING_MAX`` lines, in a thread of its own (``background``), so the store's
    queries and commit (and its lock, which the sender thread's ledger commits hold too) do not
    stall the thread reading input. At most one such settle runs at a time; while it runs, every
    new line waits behind it (file order is input order), so at most ``2 * _PENDING_MAX`` lines
    are held.
    :meth:`sync` writes and syncs in the calling thread (a STATE waits for that) and leaves the
    remembering to that thread. A settle that failed raises in the next ``write``, ``sync`` or
    ``close``.
    ``background=False`` settles in the writing thread: the plain version, for the tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        written_before: WrittenBefore | None = None,
        on_written_before: Callable[[str], None] | None = None,
        background: bool = True,
    ) -> None:
        self.path = Path(path)
        self._handle: Any = None
        self._written_before = written_before
        self._on_written_before = on_written_before
        self._pending: list[Pending] = []
        # The sender thread writes rows Planhat refused (metrics, held) beside the main thread.
        self._lock = threading.RLock()
        self._background = background
        # The settle in flight (set and cleared under the lock): only it writes to the file
        # while set. Its failure waits in _error for the next write, sync or close.
        self._settling: Future[None] | None = None
        # One thread for every settle of the run, started with the first: starting a thread
        # per settle kept the thread reading input waiting for each to start.
        self._settler: ThreadPoolExecutor | None = None
        self._error: BaseException | None = None
        self._now = _clock()
        self._unsynced = False  # lines written since the last fsync

    def remember_in(
        self, written_before: WrittenBefore, on_written_before: Callable[[str], None]
    ) -> None:
        """From now on, skip lines written in an earlier run (see the class docstring)."""
        with self._lock:
            self._written_before = written_before
            self._on_written_before = on_written_before

    def write(
        self,
        stream: str,
        reason: str,
        detail: str,
        record: Any,
        activity: dict[str, Any] | None,
        line_number: int | None,
        event_id: str | None = None,
        position: int | None = None,
    ) -> None:
        """One line for a rejected record; ``event_id`` lets a replay of it be recognised,
        ``position`` (the record's number in the input) lets ``sync(up_to)`` leave it for later."""
        head = {
            "time": self._now(time.time()),
            "stream": stream,
            "reason": reason,
            "detail": redact.redact(detail),
            "input_line": line_number,
        }
        # Built from parts so a record orjson refuses still gets a valid JSON line.
        line = (
            _json(head)[:-1]
            + b',"record":'
            + _kept(record)
            + b',"activity":'
            + (_kept(activity) if activity is not None else b"null")
            + b"}"
        )
        line = redact.redact_bytes(line) + b"\n"
        with self._lock:
            self._raise_failure()
            if self._written_before is None or (
                event_id is None and not self._pending and self._settling is None
            ):
                self._write(line)
                return
            self._pending.append((event_id, reason, line, position))  # behind the others
            if len(self._pending) < _PENDING_MAX:
                return
            if not self._background:
                self._settle_pending()
                return
        self._hand_over()

    def _hand_over(self) -> None:
        """Settle the pending lines in a thread, once the settle before them has finished."""
        self._idle()
        try:
            if len(self._pending) >= _PENDING_MAX:  # else another thread handed them over
                pending, self._pending = self._pending, []
                self._start(self._settle, pending)
        finally:
            self._lock.release()

    def settle_soon(self) -> None:
        """Start settling the lines held back so far in the settle thread, without waiting.

        Called when a batch is handed over: the lines of the records before it are then settled
        beside its sending, and the STATE that follows its acknowledgement usually finds none of
        them left to check in :meth:`sync`, in the thread that writes it.
        Does nothing while a settle is in flight or one has failed (the next ``write``, ``sync``
        or ``close`` takes them), or without ``background``.
        """
        if not self._background:
            return
        with self._lock:
            if not self._pending or self._written_before is None:
                return
            settling = self._settling
            if settling is not None:
                if not settling.done():
                    return
                self._settling = None
            if self._error is not None:  # a settle failed, this one or an earlier one
                return
            pending, self._pending = self._pending, []
            self._start(self._settle, pending)

    def _start(self, step: Callable[[list[Any]], None], batch: list[Any]) -> None:
        """Run ``step(batch)`` as the settle in flight (call holding the lock, none in flight)."""
        if self._settler is None:
            self._settler = ThreadPoolExecutor(1, thread_name_prefix="dead-letter-settle")
        self._settling = self._settler.submit(self._in_thread, step, batch)

    def _in_thread(self, step: Callable[[list[Any]], None], batch: list[Any]) -> None:
        try:
            step(batch)
        except BaseException as exc:  # raised in the next write, sync or close
            self._error = exc

    def _join(self) -> None:
        """Wait for the settle in flight (not holding the lock: it may need it); raise its
        failure."""
        settling = self._settling
        if settling is not None:
            wait((settling,))
            with self._lock:
                if self._settling is settling:
                    self._settling = None
        with self._lock:
            self._raise_failure()

    def _raise_failure(self) -> None:
        error = self._error
        if error is not None:
            self._error = None
            raise error

    def _idle(self) -> None:
        """Return holding the lock with no settle in flight (then none can start)."""
        while True:
            self._join()
            self._lock.acquire()
            if self._settling is None:
                return
            self._lock.release()

    def _write(self, line: bytes) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A large buffer: a write per 8 KB default buffer (about 3 lines) cost 10% of a run
            # with 15% anonymous events. sync() flushes before every STATE.
            self._handle = open(self.path, "ab", buffering=1 << 20)  # noqa: SIM115
        self._handle.write(line)
        self._unsynced = True

    def _settle_pending(self) -> None:
        pending, self._pending = self._pending, []
        self._settle(pending)

    def _settle(self, pending: list[Pending]) -> None:
        """Write the held-back lines not written before, make them durable, then remember them.

        In that order: a crash between the two writes a line twice on the next replay, never
        loses one. If the store cannot answer, every line is written (a line too many, never
        one too few). Runs holding the lock, or as the settle in flight (then it alone writes).
        """
        self._remember(self._write_new(pending))

    def _write_new(self, pending: list[Pending]) -> list[Pair]:
        """The first half of :meth:`_settle`: the lines not written before, written and made
        durable; returns the pairs to remember (none if the store could not answer)."""
        if not pending:
            return []
        assert self._written_before is not None
        pairs = [(event_id, reason) for event_id, reason, _, _ in pending if event_id is not None]
        remember = True
        try:
            known = self._written_before.known(pairs)
        except Exception as exc:
            logger.warning(
                "dead_letter_path: cannot check rejected events against earlier runs (%s); "
                "writing all %d lines",
                redact.redact(str(exc)),
                len(pending),
            )
            known, remember = set(), False
        new: list[Pair] = []
        if not known and len(set(pairs)) == len(pairs):
            # The usual settle: nothing written before, no event twice. One write, no Python
            # loop per line (a settle runs beside the thread reading input, and its loop held
            # the GIL that thread waits for).
            new = pairs
            self._write(b"".join([line for _, _, line, _ in pending]))
        else:
            for event_id, reason, line, _ in pending:
                if event_id is None:
                    self._write(line)
                    continue
                pair = (event_id, reason)
                if pair in known:
                    if self._on_written_before is not None:
                        self._on_written_before(reason)
                    continue
                known.add(pair)  # the same event twice in one run: counted, one line
                new.append(pair)
                self._write(line)
        self._fsync()
        return new if remember else []

    def _remember(self, new: list[Pair]) -> None:
        """The second half of :meth:`_settle`, once the lines of ``new`` are durable."""
        if not new:
            return
        assert self._written_before is not None
        try:
            self._written_before.remember(new)
        except Exception as exc:
            logger.warning(
                "dead_letter_path: cannot remember %d rejected events (%s); a replay "
                "writes them again",
                len(new),
                redact.redact(str(exc)),
            )

    def _fsync(self) -> None:
        # Nothing written since the last fsync (a STATE after a settle that synced): none.
        if self._handle is not None and self._unsynced:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._unsynced = False

    def sync(self, up_to: int | None = None) -> None:
        """Before a STATE that covers rejected records, make their lines durable: every line
        held back, or with ``up_to`` (the STATE's input position) those of records up to it.

        Only that waits: with ``background``, remembering them runs in the settle thread (the
        next settle waits for it, so it still sees them). Lines after ``up_to`` stay held back,
        in order, for a later settle: the STATE does not cover their records.
        """
        self._idle()
        try:
            pending = self._pending
            cut = len(pending)
            if up_to is not None:
                # Through the last line the STATE needs: of a record up to it, or of no record
                # (refused metric rows: for batches already acknowledged). In file order, so a
                # later record's line before such a line is settled too.
                cut = 0
                for number, (_, _, _, position) in enumerate(pending, 1):
                    if position is None or position <= up_to:
                        cut = number
            if not cut:
                self._fsync()
                return
            pending, self._pending = pending[:cut], pending[cut:]
            new = self._write_new(pending)  # synced
            if self._background and new:
                self._start(self._remember, new)
            else:
                self._remember(new)
        finally:
            self._lock.release()

    def close(self) -> None:
        self._idle()
        try:
            if self._pending:
                self._settle_pending()
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            if self._settler is not None:
                self._settler.shutdown()  # idle: nothing in flight
                self._settler = None
        finally:
            self._lock.release()
