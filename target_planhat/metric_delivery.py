"""A batch's metric observations -> Planhat dimension-data points, each event counted once.

Runs in the sender thread, inside the batch's delivery and before its activities, so the STATE
that covers a batch waits for both. Per rule, the events already counted (in this batch, or by an
earlier run: ``metric_counts``) are dropped; the rest become one point per rule, day and object:
the run's increment for ``count`` / ``sum``, the day's distinct total for ``count_distinct``.
Each POST's events are committed as counted right after Planhat acknowledged it, so a kill
between the two re-sends at most that one POST, like the activities. All of it (which events are
new, the totals, the POSTs, the commits) happens under ``MetricCounts.exclusive``: another run
of the same tenant waits, so its ``count_distinct`` totals include what this one committed and
reach Planhat after this one's. Events of a ``count_distinct`` day that is closed (its values
pruned after ``ledger_ttl_days`` without a new one) are skipped, never sent as a smaller total.

Dry run writes the points to the dry-run file (each line ``{"dimensiondata": point}``) and
stores nothing: counts are kept in memory for the run only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import orjson

from target_planhat.metrics import MetricRule, MetricRules, Observation, aggregate
from target_planhat.planhat import PlanhatClient
from target_planhat.rejects import DeadLetterFile
from target_planhat.report import DeliveryReport
from target_planhat.shutdown import ShutdownGuard

logger = logging.getLogger("target_planhat.metrics")

#: Points per POST at most (besides ``max_request_bytes``).
MAX_POINTS_PER_REQUEST = 5000
DEAD_LETTER_STREAM = "dimensiondata"


class Seen(NamedTuple):
    """One observation as the batch carries it: with the event's id and input position."""

    observation: Observation
    event_id: str
    seq: int


class Counts(Protocol):
    def counted(self, rule: str, event_ids: Sequence[str]) -> set[str]: ...

    def closed_days(self, rule: str, days: Sequence[str]) -> set[str]: ...

    def exclusive(self) -> contextlib.AbstractContextManager[None]: ...

    def distinct_totals(self, rule: str, day: str, new: dict[str, set[str]]) -> dict[str, int]: ...

    def commit(
        self,
        events: Sequence[tuple[str, str]],
        distinct: Sequence[tuple[str, str, str, str]],
    ) -> None: ...


class MemoryCounts:
    """``MetricCounts`` for a dry run: the same answers, for this run only, stored nowhere."""

    def __init__(self) -> None:
        self._events: set[tuple[str, str]] = set()
        self._distinct: dict[tuple[str, str, str], set[str]] = {}

    def counted(self, rule: str, event_ids: Sequence[str]) -> set[str]:
        return {event_id for event_id in event_ids if (rule, event_id) in self._events}

    def closed_days(self, rule: str, days: Sequence[str]) -> set[str]:
        return set()  # nothing is pruned within one dry run

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # stores nothing: nothing to share

    def distinct_totals(self, rule: str, day: str, new: dict[str, set[str]]) -> dict[str, int]:
        return {
            external_id: len(self._distinct.get((rule, day, external_id), set()) | values)
            for external_id, values in new.items()
        }

    def commit(
        self,
        events: Sequence[tuple[str, str]],
        distinct: Sequence[tuple[str, str, str, str]],
    ) -> None:
        self._events.update(events)
        for rule, day, external_id, value in distinct:
            self._distinct.setdefault((rule, day, external_id), set()).add(value)


class _Point(NamedTuple):
    body: bytes
    events: list[tuple[str, str]]  # (rule key, event id) it counts
    distinct: list[tuple[str, str, str, str]]  # (rule key, day, external id, value) it adds


def _answer_errors(answer: bytes) -> list[tuple[Any, str]]:
    """``(item, error)`` for each row Planhat refused, from ``{"processed", "errors"}``."""
    try:
        data = orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        logger.debug("dimension-data answer is not JSON: %r", answer[:200])
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return []
    out: list[tuple[Any, str]] = []
    for entry in errors:
        if isinstance(entry, dict):
            out.append((entry.get("item"), str(entry.get("error") or "refused by Planhat")))
        else:
            out.append((entry, "refused by Planhat"))
    return out


class MetricDelivery:
    def __init__(
        self,
        rules: MetricRules,
        counts: Counts,
        report: DeliveryReport,
        dead_letter: DeadLetterFile,
        guard: ShutdownGuard,
        max_request_bytes: int,
        client: PlanhatClient | None = None,
        write_dry_run: Callable[[Sequence[bytes]], None] | None = None,
    ) -> None:
        self._rules = rules.rules
        self._counts = counts
        self._report = report
        self._dead_letter = dead_letter
        self._guard = guard
        self._max_bytes = max_request_bytes - 2
        self._client = client
        self._write_dry_run = write_dry_run

    def _new(self, seen: Sequence[Seen]) -> list[Seen]:
        """Drop what each rule already counted: earlier in this batch, or in the store."""
        by_rule: dict[int, list[Seen]] = {}
        duplicates = 0
        for item in seen:
            by_rule.setdefault(item.observation.rule, []).append(item)
        fresh: list[Seen] = []
        for rule_index, items in by_rule.items():
            rule = self._rules[rule_index]
            closed: set[str] = set()
            if rule.aggregate == "count_distinct":
                closed = self._counts.closed_days(
                    rule.key, sorted({item.observation.day for item in items})
                )
            if closed:
                kept = [item for item in items if item.observation.day not in closed]
                skipped = len(items) - len(kept)
                with self._report.lock:
                    self._report.metrics_skipped[f"{rule.label}: day closed"] += skipped
                items = kept
            known = self._counts.counted(rule.key, [item.event_id for item in items])
            for item in items:
                if item.event_id not in known:
                    known.add(item.event_id)
                    fresh.append(item)
                else:
                    duplicates += 1
        with self._report.lock:
            self._report.metrics_duplicates_skipped += duplicates
        return fresh

    def _points(self, fresh: Sequence[Seen]) -> list[_Point]:
        rules = self._rules
        sums = aggregate(rules, [item.observation for item in fresh])
        events: dict[tuple[int, str, str], list[tuple[str, str]]] = {}
        for item in fresh:
            rule_index, day, external_id, _ = item.observation
            key = (rule_index, day, external_id)
            events.setdefault(key, []).append((rules[rule_index].key, item.event_id))
        distinct_new: dict[tuple[int, str], dict[str, set[str]]] = {}
        for (rule_index, day, external_id), value in sums.items():
            if isinstance(value, set):
                distinct_new.setdefault((rule_index, day), {})[external_id] = value
        totals: dict[tuple[int, str, str], int] = {}
        for (rule_index, day), new in distinct_new.items():
            found = self._counts.distinct_totals(rules[rule_index].key, day, new)
            totals.update(((rule_index, day, ext), total) for ext, total in found.items())
        points: list[_Point] = []
        for key in sorted(sums):
            rule_index, day, external_id = key
            rule: MetricRule = rules[rule_index]
            value = sums[key]
            distinct: list[tuple[str, str, str, str]] = []
            if isinstance(value, set):
                distinct = [(rule.key, day, external_id, v) for v in sorted(value)]
                value = totals[key]
            body = orjson.dumps(rule.point(day, external_id, value))
            points.append(_Point(body, events[key], distinct))
        return points

    def _chunks(self, points: list[_Point]) -> Iterator[list[_Point]]:
        chunk: list[_Point] = []
        size = 0
        for point in points:
            cost = len(point.body) + 1
            if chunk and (size + cost > self._max_bytes or len(chunk) >= MAX_POINTS_PER_REQUEST):
                yield chunk
                chunk, size = [], 0
            chunk.append(point)
            size += cost
        if chunk:
            yield chunk

    def deliver(self, seen: Sequence[Seen]) -> None:
        """Send (or write) the batch's new points; commit each POST's events once acknowledged."""
        if not seen:
            return
        with self._counts.exclusive():
            self._deliver(seen)

    def _deliver(self, seen: Sequence[Seen]) -> None:
        fresh = self._new(seen)
        if not fresh:
            return
        for chunk in self._chunks(self._points(fresh)):
            bodies = [point.body for point in chunk]
            errors: list[tuple[Any, str]] = []
            if self._write_dry_run is not None:
                self._write_dry_run([b'{"dimensiondata":' + body + b"}" for body in bodies])
            else:
                assert self._client is not None
                answer = self._client.send(b"[" + b",".join(bodies) + b"]", len(chunk))
                errors = _answer_errors(answer)
            with self._guard.critical():
                for item, error in errors:
                    self._dead_letter.write(
                        DEAD_LETTER_STREAM, "metric_rejected", error, item, None, None
                    )
                self._counts.commit(
                    [event for point in chunk for event in point.events],
                    [row for point in chunk for row in point.distinct],
                )
                report = self._report
                with report.lock:
                    if self._write_dry_run is not None:
                        report.metrics_dry_run_written += len(chunk)
                    else:
                        rejected = min(len(errors), len(chunk))
                        report.metrics_rejected += rejected
                        report.metrics_sent += len(chunk) - rejected
