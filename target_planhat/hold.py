"""Activities Planhat would drop, held in the store until their ids exist (``on_unmatched``).

Planhat answers 200 to an activity that matches no company or end user, and does not save it;
sent again later, with its original ``date``, once the company or user exists, it restores the
history. So an unmatched activity (``known_ids``'s rule) is, by ``on_unmatched``:

- ``hold`` (the default with ``planhat_api_token``): stored in the ledger's store, encoded as it
  would be sent (its original date inside), under its dedupe id, with the reason, the unknown id,
  its stream and when it was held. Stored durably before the STATE that covers it: a held
  activity counts as settled for STATE, nothing is lost.
- ``send``: sent anyway and counted as ``sent_unmatched``;
- ``dead_letter``: written to the dead-letter file with its reason;
- ``fail``: the run stops naming the activity and the reason.

Every run (not a dry run) first re-checks the hold against the ids (refreshed when due), sends
the activities that now match through the same batching, ledger and retries as any other (the
ledger's ids are the dedupe ids, so each is sent exactly once, also across a crash: an activity
acknowledged but still held when a run was killed is skipped by the ledger and then let go), and
moves those held longer than ``hold_days`` to the dead-letter file (``unmatched_expired``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from target_planhat.known_ids import KnownIds, StoreLike, Unmatched
from target_planhat.rejects import RejectedRecord
from target_planhat.settings import UNMATCHED_POLICIES

logger = logging.getLogger("target_planhat.hold")

EXPIRED = "unmatched_expired"
#: Held activities re-checked (and released) per step: the default ``batch_size_rows``.
RELEASE_PAGE = 10_000
_CHUNK = 500  # ids per DELETE statement: under SQLite's bound-parameter limit

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS held_activities (tenant TEXT NOT NULL, id TEXT NOT NULL,"
    " stream TEXT NOT NULL, activity TEXT NOT NULL, action TEXT NOT NULL,"
    " reason TEXT NOT NULL, unknown_id TEXT NOT NULL, held_at BIGINT NOT NULL,"
    " PRIMARY KEY (tenant, id))",
    "CREATE INDEX IF NOT EXISTS held_activities_held_at ON held_activities (tenant, held_at)",
)

Item = tuple[str, bytes, str, int, str]  # runtime.Item: (id, activity, action, position, date)


class UnmatchedActivity(RejectedRecord):
    """``on_unmatched: fail``: the message names the activity and why Planhat would drop it."""


class DeadLetterLike(Protocol):
    def write(
        self,
        stream: str,
        reason: str,
        detail: str,
        record: Any,
        activity: dict[str, Any] | None,
        line_number: int | None,
    ) -> None: ...

    def sync(self) -> None: ...


@dataclass
class Held:
    id: str
    stream: str
    activity: bytes
    action: str
    reason: str
    unknown_id: str
    held_at: float  # Unix seconds


def _iso(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Hold:
    """The ``held_activities`` table of one tenant."""

    def __init__(self, store: StoreLike, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.tenant = store.tenant
        self._clock = clock
        store.ensure_schema("held_activities", SCHEMA)

    def add(self, rows: Sequence[tuple[str, str, bytes, str, Unmatched]]) -> int:
        """Store ``(id, stream, activity, action, why)`` rows durably (committed on return).

        An id already held stays as it was (its first ``held_at`` counts for ``hold_days``).
        """
        if not rows:
            return 0
        now = int(self._clock() * 1000)
        tenant = self.tenant
        values = [
            (tenant, id_, stream, body.decode(), action, why.reason, why.unknown_id, now)
            for id_, stream, body, action, why in rows
        ]

        def work() -> None:
            self.store.executemany(
                "INSERT INTO held_activities (tenant, id, stream, activity, action, reason,"
                " unknown_id, held_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant, id) DO NOTHING",
                values,
            )

        self.store.atomic(work)
        return len(rows)

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if not ids:
            return

        def work() -> None:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                self.store.execute(
                    f"DELETE FROM held_activities WHERE tenant = ? AND id IN ({marks})",
                    (self.tenant, *chunk),
                )

        self.store.atomic(work)

    def pages(self, size: int = RELEASE_PAGE, before: float | None = None) -> Iterator[list[Held]]:
        """Every held activity, oldest first, ``size`` at a time (keyset paging: rows deleted
        between pages do not shift it); only those held before ``before`` when given."""
        last: tuple[int, str] = (-1, "")
        limit = int(before * 1000) if before is not None else None
        while True:
            sql = (
                "SELECT id, stream, activity, action, reason, unknown_id, held_at"
                " FROM held_activities WHERE tenant = ?"
                " AND (held_at > ? OR (held_at = ? AND id > ?))"
            )
            params: list[object] = [self.tenant, last[0], last[0], last[1]]
            if limit is not None:
                sql += " AND held_at < ?"
                params.append(limit)
            sql += " ORDER BY held_at, id LIMIT ?"
            params.append(size)
            rows = self.store.execute(sql, params)
            if not rows:
                return
            yield [
                Held(r[0], r[1], str(r[2]).encode(), r[3], r[4], r[5], int(r[6]) / 1000.0)
                for r in rows
            ]
            last = (int(rows[-1][6]), rows[-1][0])
            if len(rows) < size:
                return

    # --- what --show-held prints -------------------------------------------------------------

    def count(self) -> int:
        rows = self.store.execute(
            "SELECT COUNT(*) FROM held_activities WHERE tenant = ?", (self.tenant,)
        )
        return int(rows[0][0])

    def summary(self, top: int = 10) -> dict[str, Any]:
        tenant = self.tenant
        by_reason = self.store.execute(
            "SELECT reason, COUNT(*) FROM held_activities WHERE tenant = ? GROUP BY reason",
            (tenant,),
        )
        oldest = self.store.execute(
            "SELECT MIN(held_at) FROM held_activities WHERE tenant = ?", (tenant,)
        )[0][0]
        ids = self.store.execute(
            "SELECT reason, unknown_id, COUNT(*) AS n FROM held_activities WHERE tenant = ?"
            " GROUP BY reason, unknown_id ORDER BY n DESC, unknown_id LIMIT ?",
            (tenant, top),
        )
        reasons = {str(r): int(n) for r, n in sorted(by_reason, key=lambda row: -int(row[1]))}
        oldest_date = self._oldest_activity_date()
        return {
            "held": sum(reasons.values()),
            "held_by": reasons,
            "oldest_held_at": _iso(int(oldest) / 1000.0) if oldest is not None else None,
            "oldest_activity_date": oldest_date,
            "top_unknown_ids": [
                {"reason": str(r), "id": str(i), "activities": int(n)} for r, i, n in ids
            ],
        }

    def _oldest_activity_date(self) -> str | None:
        """The earliest ``date`` among held activities (read from the activities themselves)."""
        oldest: str | None = None
        for page in self.pages():
            for held in page:
                try:
                    date = orjson.loads(held.activity).get("date")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(date, str) and (oldest is None or date < oldest):
                    oldest = date
        return oldest


class UnmatchedPolicy:
    """``on_unmatched`` in the delivery path (the sender thread) and at the start of a run."""

    def __init__(
        self,
        policy: str,
        known: KnownIds,
        hold: Hold | None,
        hold_days: float,
        dead_letter: DeadLetterLike,
        report: Any,
    ) -> None:
        if policy not in UNMATCHED_POLICIES:
            raise ValueError(f"on_unmatched: must be one of {', '.join(UNMATCHED_POLICIES)}")
        self.policy = policy
        self.known = known
        self.hold = hold  # None in a dry run: report what would be held, store nothing
        self.hold_days = hold_days
        self.dead_letter = dead_letter
        self.report = report

    # --- in the delivery path ----------------------------------------------------------------

    def split(self, items: Sequence[Item], stream: str) -> tuple[list[Item], frozenset[str]]:
        """The items to send, and the ids among them that match nothing (``send`` only).

        Unmatched items are held (stored before this returns), dead-lettered or fail the batch,
        by policy; an item held is settled: nothing more to do before its STATE.
        """
        if not items:
            return [], frozenset()
        activities = [orjson.loads(item[1]) for item in items]
        verdicts = self.known.check(activities)
        if any(verdicts) and self.known.refresh_before_holding():
            verdicts = self.known.check(activities)
        unmatched = [(i, why) for i, why in enumerate(verdicts) if why is not None]
        if not unmatched:
            return list(items), frozenset()
        if self.policy == "send":
            return list(items), frozenset(items[i][0] for i, _ in unmatched)
        if self.policy == "fail":
            i, why = unmatched[0]
            raise UnmatchedActivity(
                f"activity {items[i][0]} of stream '{stream}' matches nothing Planhat knows: "
                f"{why.reason} {why.unknown_id!r} (on_unmatched=fail; Planhat would drop it)"
            )
        if self.policy == "dead_letter":
            for i, why in unmatched:
                self.dead_letter.write(
                    stream,
                    why.reason,
                    f"{why.unknown_id!r} is not known to Planhat (on_unmatched=dead_letter)",
                    None,
                    activities[i],
                    None,
                )
            self.dead_letter.sync()
            with self.report.lock:
                for _, why in unmatched:
                    self.report.rejected[why.reason] += 1
        else:
            rows = [(items[i][0], stream, items[i][1], items[i][2], why) for i, why in unmatched]
            if self.hold is not None:
                self.hold.add(rows)
            with self.report.lock:
                for _, why in unmatched:
                    self.report.count_held(why.reason, why.unknown_id)
        skip = {i for i, _ in unmatched}
        return [item for i, item in enumerate(items) if i not in skip], frozenset()

    # --- at the start of a run ---------------------------------------------------------------

    def release(self, deliver: Callable[[list[Item]], None]) -> None:
        """Send the held activities that now match (``deliver`` = the run's delivery of a batch,
        ledger and retries included), then let go of them; each page once delivered."""
        hold = self.hold
        if hold is None or not hold.count():
            return
        # Against fresh ids: a company created since the last load releases its activities now.
        self.known.refresh_before_holding()
        for page in hold.pages():
            activities = []
            for held in page:
                try:
                    activities.append(orjson.loads(held.activity))
                except orjson.JSONDecodeError:
                    activities.append({})
            verdicts = self.known.check(activities)
            ready = [
                (held, activity)
                for held, activity, why in zip(page, activities, verdicts, strict=True)
                if why is None
            ]
            if not ready:
                continue
            # ``deliver`` counts them as released, and may let go of each chunk as it is
            # acknowledged. Afterwards every one was acknowledged, now or (found in the ledger)
            # by an earlier run killed before it let go: none stays held.
            deliver(
                [
                    (held.id, held.activity, held.action, n, _date(activity))
                    for n, (held, activity) in enumerate(ready)
                ]
            )
            hold.delete([held.id for held, _ in ready])
        if self.report.released:
            logger.info("Released %d held activities that Planhat now knows", self.report.released)

    def expire(self, now: float | None = None) -> None:
        """Held longer than ``hold_days``: to the dead-letter file as ``unmatched_expired``."""
        hold = self.hold
        if hold is None:
            return
        cutoff = (time.time() if now is None else now) - self.hold_days * 86400
        expired = 0
        for page in hold.pages(before=cutoff):
            for held in page:
                try:
                    activity: Any = orjson.loads(held.activity)
                except orjson.JSONDecodeError:
                    activity = {"unparsed": held.activity.decode("utf-8", "replace")}
                self.dead_letter.write(
                    held.stream,
                    EXPIRED,
                    f"{held.reason} {held.unknown_id!r}: held since {_iso(held.held_at)}, "
                    f"longer than hold_days={self.hold_days:g}",
                    None,
                    activity,
                    None,
                )
            # The lines are durable before the activities leave the store: a kill in between
            # writes them again next run, never loses them.
            self.dead_letter.sync()
            hold.delete([held.id for held in page])
            expired += len(page)
        if expired:
            with self.report.lock:
                self.report.expired += expired
            logger.warning(
                "%d held activities were never matched within hold_days=%g: moved to the "
                "dead-letter file as %s",
                expired,
                self.hold_days,
                EXPIRED,
            )


def _date(activity: dict[str, Any]) -> str:
    """A held activity's date as the ledger keys it (validated before it was held)."""
    date = activity.get("date")
    return date if isinstance(date, str) else ""
