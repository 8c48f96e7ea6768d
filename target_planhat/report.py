"""The delivery report: what happened to every record, as one JSON line.

Planhat answers 200 even to activities it drops, so a run that "succeeded" may have delivered
nothing useful. The report is how a user sees that: counts from every step, and a WARNING when
records came in and none went out.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from target_planhat import redact
from target_planhat.planhat import SendStats

logger = logging.getLogger("target_planhat.report")
_TOP_ACTIONS = 10
_MAX_ACTIONS_TRACKED = 10_000
#: A run with fewer activities may lack a field by chance; from this many on, absent in every
#: one means the path is wrong.
MIN_ACTIVITIES_FOR_MISSING_WARNING = 20
_TOP_UNKNOWN_IDS = 5


class DeliveryReport:
    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.started = time.time()
        self.received = 0
        self.sent = 0
        self.dry_run_written = 0
        self.duplicates_skipped = 0
        self.filtered: Counter[str] = Counter()
        self.skipped_streams: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        # Rejected again after a replay: counted in `rejected`, not written to the file again.
        self.rejected_again: Counter[str] = Counter()
        self.shape_problems: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.send_stats = SendStats()
        self.states_written = 0
        self.ledger_pruned = 0
        # on_unmatched (hold.py): activities Planhat would drop.
        self.held: Counter[str] = Counter()  # by reason
        self.unknown_ids: Counter[tuple[str, str]] = Counter()  # (reason, id) -> activities
        self.released = 0
        self.expired = 0
        self.sent_unmatched = 0
        # Metrics (dimension data) and roll-ups.
        self.metrics_sent = 0
        self.metrics_rejected = 0
        self.metrics_dry_run_written = 0
        self.metrics_duplicates_skipped = 0
        self.metrics_skipped: Counter[str] = Counter()
        self.metric_send_stats = SendStats()
        self.rollup_events = 0
        self.rollup_activities = 0
        # The sender thread counts deliveries while the main thread may be writing a report.
        self.lock = threading.Lock()
        # Mapped fields absent from activities (a path that matched nothing; info empty).
        self.activities = 0  # activities built and not filtered out
        self.missing_fields: Counter[str] = Counter()
        self._scalar_fields: frozenset[str] = frozenset()
        self._info_mapped = False
        self._full_size = 0
        self.mapped_fields: dict[str, str] = {}

    def set_mapped_fields(self, fields: dict[str, str]) -> None:
        """The mapping's fields (field -> JSONPath), whose absence ``count_missing`` counts."""
        self.mapped_fields = dict(fields)
        self._scalar_fields = frozenset(fields) - {"info"}
        self._info_mapped = "info" in fields
        self._full_size = len(fields)

    def count_rejected_again(self, reason: str) -> None:
        with self.lock:  # the sender thread may settle dead-letter lines too
            self.rejected_again[reason] += 1

    def count_missing(self, activity: dict[str, Any]) -> None:
        """Per mapped field, one more activity without it (called once per activity)."""
        self.activities += 1
        # Per record: the mapping only ever adds its own fields, so a full-size activity lacks
        # none of them and the set difference is skipped.
        if len(activity) < self._full_size:
            counts = self.missing_fields
            for field in self._scalar_fields - activity.keys():
                counts[field] += 1  # Counter.update(set) costs ~10x more
        if self._info_mapped and not activity.get("info"):
            self.missing_fields["info"] += 1

    def count_actions(self, actions: Iterable[str]) -> None:
        """Count a chunk's actions; once ``_MAX_ACTIONS_TRACKED`` are tracked, only those.

        Counted per chunk in C (``Counter``), then admitted in first-seen order: the same counts
        as admitting them one by one (the unit test compares the two).
        """
        counted = Counter(actions)
        tracked = self.actions
        if len(tracked) + len(counted) <= _MAX_ACTIONS_TRACKED:
            tracked.update(counted)
            return
        for action, n in counted.items():
            if action in tracked or len(tracked) < _MAX_ACTIONS_TRACKED:
                tracked[action] += n

    def count_held(self, reason: str, unknown_id: str) -> None:
        self.held[reason] += 1
        key = (reason, unknown_id)
        if key in self.unknown_ids or len(self.unknown_ids) < _MAX_ACTIONS_TRACKED:
            self.unknown_ids[key] += 1

    def top_unknown_ids(self, n: int = _TOP_UNKNOWN_IDS) -> str:
        """``unknown_company 'acme-9' (120), ...``: the ids a WARNING names."""
        return ", ".join(
            f"{reason} {uid!r} ({count})"
            for (reason, uid), count in self.unknown_ids.most_common(n)
        )

    def as_dict(self, status: str) -> dict[str, Any]:
        with self.lock:
            return self._as_dict(status)

    def _as_dict(self, status: str) -> dict[str, Any]:
        stats = self.send_stats
        return {
            "type": "planhat_delivery_report",
            "status": status,
            "elapsed_seconds": round(time.time() - self.started, 3),
            "received": self.received,
            "sent": self.sent,
            "dry_run_written": self.dry_run_written,
            "filtered": sum(self.filtered.values()),
            "filtered_by": dict(self.filtered.most_common()),
            "skipped_streams": dict(self.skipped_streams),
            "rejected": sum(self.rejected.values()),
            "rejected_by": dict(self.rejected.most_common()),
            "rejected_again": sum(self.rejected_again.values()),
            "duplicates_skipped": self.duplicates_skipped,
            "shape_problems": dict(self.shape_problems),
            "requests": stats.requests,
            "retries": stats.retries,
            "bytes": stats.bytes_sent,
            # Both endpoints: a POST whose answer never arrived may have reached Planhat.
            "unconfirmed_requests": stats.unconfirmed_requests
            + self.metric_send_stats.unconfirmed_requests,
            "states_written": self.states_written,
            "ledger_pruned": self.ledger_pruned,
            "held": sum(self.held.values()),
            "held_by": dict(self.held.most_common()),
            "released": self.released,
            "expired": self.expired,
            "sent_unmatched": self.sent_unmatched,
            "top_actions": dict(self.actions.most_common(_TOP_ACTIONS)),
            "metrics_sent": self.metrics_sent,
            "metrics_rejected": self.metrics_rejected,
            "metrics_dry_run_written": self.metrics_dry_run_written,
            "metrics_duplicates_skipped": self.metrics_duplicates_skipped,
            "metrics_skipped": dict(self.metrics_skipped.most_common()),
            "metric_requests": self.metric_send_stats.requests,
            "metric_retries": self.metric_send_stats.retries,
            "rollup_events": self.rollup_events,
            "rollup_activities": self.rollup_activities,
            "missing_fields": dict(self.missing_fields.most_common()),
        }

    def emit(self, status: str) -> dict[str, Any]:
        """Log the report as one JSON line on stderr and write it to ``report_path`` if set."""
        data = self.as_dict(status)
        try:
            line = orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            # A stream name or action from the input may hold a lone surrogate (invalid UTF-8
            # on stdin): the stdlib escapes it instead of failing the run at its very end.
            line = json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)
        # Not a log record, so the log redaction does not see it: an action or stream name taken
        # from the input may hold the tenant token.
        line = redact.redact(line)
        # A bare JSON line, not a log record, so a tool can parse stderr for it.
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(line + "\n", encoding="utf-8")
                tmp.replace(self.path)
            except OSError as exc:
                # The run's outcome must not be replaced by a failure to write its summary.
                logger.error("report_path: cannot write %r: %s", str(self.path), exc)
        return data

    def warn_if_nothing_delivered(self) -> None:
        """A wrong mapping looks like success to Planhat; say so loudly."""
        delivered = self.sent + self.dry_run_written + self.duplicates_skipped
        if self.received == 0 or delivered > 0:
            return
        reasons: Counter[str] = Counter()
        reasons.update({f"held: {k}": v for k, v in self.held.items()})
        reasons.update({f"rejected: {k}": v for k, v in self.rejected.items()})
        reasons.update({f"filtered: {k}": v for k, v in self.filtered.items()})
        reasons.update({f"stream not selected: {k}": v for k, v in self.skipped_streams.items()})
        top = reasons.most_common(1)
        why = f"{top[0][0]} ({top[0][1]} records)" if top else "unknown"
        logger.warning(
            "Received %d records but sent none to Planhat; top reason: %s", self.received, why
        )

    def warn_if_mostly_held(self, dry_run: bool = False) -> None:
        """Most activities held: the mapping probably puts the wrong value in an id field.

        In a dry run, also say what would have been held (nothing is stored)."""
        held = sum(self.held.values())
        if held and dry_run:
            logger.info(
                "Dry run: %d activities would be held (%s); top unknown ids: %s",
                held,
                ", ".join(f"{k}: {v}" for k, v in self.held.most_common()),
                self.top_unknown_ids(),
            )
        if held == 0 or held <= self.sent + self.dry_run_written:
            return
        logger.warning(
            "%d of %d activities %s held because Planhat knows none of their ids (is the "
            "mapping right?); top unknown ids: %s",
            held,
            held + self.sent + self.dry_run_written,
            "would be" if dry_run else "were",
            self.top_unknown_ids(),
        )

    def warn_missing_fields(self, min_activities: int = MIN_ACTIVITIES_FOR_MISSING_WARNING) -> None:
        """A mapped field no activity of a sizeable run had: almost surely a wrong path."""
        if self.activities < min_activities:
            return
        for field, count in self.missing_fields.items():
            if count >= self.activities:
                path = self.mapped_fields.get(field, "?")
                what = "was empty" if field == "info" else "was missing"
                logger.warning(
                    "mapping.%s (%s) %s in all %d activities of this run: its path(s) match "
                    "nothing in these events; check it against the dry-run file or the tap's "
                    "records (the report's missing_fields counts per field)",
                    field,
                    path,
                    what,
                    self.activities,
                )

    def hint_if_mostly_duplicates(self, ledger: str) -> None:
        """Most activities skipped as already delivered: say why, and how to send them again.

        After fixing a mapping, a re-run sends nothing (the ledger has every id) and would
        otherwise say only ``duplicates_skipped``.
        """
        total = self.sent + self.dry_run_written + self.duplicates_skipped
        if not self.duplicates_skipped or self.duplicates_skipped * 2 <= total:
            return
        logger.warning(
            "%d of %d activities were skipped as already delivered: the ledger at %s holds "
            "their ids (duplicates_skipped). To send them again, e.g. after fixing a mapping: "
            "target-planhat --config FILE --forget-delivered (all ids, or --since/--until ISO "
            "for a time range; with Meltano: meltano invoke target-planhat --forget-delivered), "
            "then run again. Planhat then keeps both copies of what it already had.",
            self.duplicates_skipped,
            total,
            ledger,
        )
