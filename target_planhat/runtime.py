"""Everything one run shares: settings, report, ledger, the Planhat client (or dry-run file).

``deliver`` is the one place a batch becomes acknowledged: sent (or written), then recorded in the
ledger, then counted, before any STATE that covers it can be written. ``submit`` runs it in the
sender thread (``sender.py``), one batch at a time, while the main thread builds the next batch,
and reports each acknowledged step to ``checkpoints`` (the batch in flight is its ``IN_FLIGHT``).
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from target_planhat.checkpoints import IN_FLIGHT, Checkpoints
from target_planhat.errors import StoreError
from target_planhat.hold import Hold, UnmatchedPolicy
from target_planhat.known_ids import KnownIds, models_for
from target_planhat.ledger import Ledger
from target_planhat.metric_counts import MetricCounts
from target_planhat.metric_delivery import MemoryCounts, MetricDelivery, Seen
from target_planhat.planhat import PlanhatClient
from target_planhat.planhat_rest import PlanhatRestClient
from target_planhat.rejected_ids import RejectedIds
from target_planhat.rejects import DeadLetterFile
from target_planhat.report import DeliveryReport
from target_planhat.rollup import combine
from target_planhat.sender import Sender
from target_planhat.settings import Settings
from target_planhat.shutdown import ShutdownGuard
from target_planhat.store import Store, open_store

logger = logging.getLogger("target_planhat")

# (dedupe id, encoded activity, action, input position, the activity's date: ISO 8601 UTC)
Item = tuple[str, bytes, str, int, str]
_ID, _BODY, _ACTION = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)
_DATE = operator.itemgetter(4)


class DryRunFile:
    """The activities exactly as they would be POSTed, one per line."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self._handle = open(path, "ab")  # noqa: SIM115 - kept open for the run

    def write(self, bodies: Sequence[bytes]) -> None:
        self._handle.write(b"\n".join(bodies) + b"\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())  # "acknowledged" in dry run means durable on disk

    def close(self) -> None:
        self._handle.close()


class Runtime:
    def __init__(self, settings: Settings, version: str = "") -> None:
        self.closed = False
        self.settings = settings
        self.guard = ShutdownGuard()
        self.report = DeliveryReport(settings.report_path)
        self.report.set_mapped_fields(settings.mapper.mapped_fields)
        self.dead_letter = DeadLetterFile(settings.dead_letter_path)
        self.seq = 0  # RECORD messages read so far
        self.line_number: int | None = None
        self.checkpoints = Checkpoints()
        self.sender = Sender(check=self.guard.check)
        # An activity holding the token would put it in the dry-run file or the request body.
        self.secret = settings.tenant_token.encode() if len(settings.tenant_token) >= 4 else b""
        self.client: PlanhatClient | None = None
        self.dry_run_file: DryRunFile | None = None
        if settings.dry_run:
            self.dry_run_file = DryRunFile(settings.dry_run_path)
        else:
            self.client = PlanhatClient(
                settings.api_url,
                settings.tenant_token,
                **self._http_options(version),
            )
            self.report.send_stats = self.client.stats
        #: The ledger's store (SQLite or PostgreSQL), opened once for whatever keeps state in it
        #: (the ledger, metric counts, the hold and the ids Planhat knows).
        self.store: Store | None = None
        self.ledger: Ledger | None = None
        if settings.dedupe and not settings.dry_run:
            # Dry run never touches the ledger: a later live run must still send everything.
            store = self._shared_store()
            try:
                self.ledger = Ledger(store, settings.ledger_ttl_days)
            except BaseException:
                store.close()
                self.store = None
                raise
            self.report.ledger_pruned = self.ledger.pruned
            if settings.on_invalid_record == "dead_letter":
                # A replayed event rejected again is counted, not written again.
                self.dead_letter.remember_in(
                    RejectedIds(self.ledger.store, settings.ledger_ttl_days),
                    self.report.count_rejected_again,
                )
        self.metric_client: PlanhatClient | None = None
        self.metrics: MetricDelivery | None = None
        if settings.metrics:
            self.metrics = self._metric_delivery(settings, version)
        self.rest_client: PlanhatRestClient | None = None
        #: ``on_unmatched`` (hold.py): None without planhat_api_token (nothing is checked).
        self.unmatched: UnmatchedPolicy | None = None
        if settings.on_unmatched is not None:
            self._check_ids(version)

    def _shared_store(self) -> Store:
        if self.store is None:
            self.store = open_store(self.settings)
            self.store.sleep = self.guard.sleep  # a signal ends a wait between reconnects
        return self.store

    def _http_options(self, version: str) -> dict[str, Any]:
        """What every client of Planhat (activities, metric points, the REST API) shares."""
        return {
            "request_timeout": self.settings.request_timeout,
            "max_retry_seconds": self.settings.max_retry_seconds,
            "guard": self.guard,
            "user_agent": f"target-planhat/{version}".rstrip("/"),
        }

    def _metric_delivery(self, settings: Settings, version: str) -> MetricDelivery:
        """Metric points: to the dry-run file (counts in memory), or to Planhat with what each
        rule counted kept in the store (whatever ``dedupe`` says: it is the metrics' only
        protection against counting an event twice)."""
        self.report.metrics_skipped = settings.metrics.skipped
        counts: MetricCounts | MemoryCounts
        if self.dry_run_file is not None:
            counts = MemoryCounts()
        else:
            counts = MetricCounts(
                self._shared_store(), settings.ledger_ttl_days, sleep=self.guard.sleep
            )
            self.metric_client = PlanhatClient(
                settings.api_url,
                settings.tenant_token,
                **self._http_options(version),
                path=settings.metrics_path,
                bearer=settings.planhat_api_token,
                what="metric points",
            )
            self.report.metric_send_stats = self.metric_client.stats
        return MetricDelivery(
            settings.metrics,
            counts,
            self.report,
            self.dead_letter,
            self.guard,
            settings.max_request_bytes,
            client=self.metric_client,
            write_dry_run=self.dry_run_file.write if self.dry_run_file is not None else None,
        )

    def _check_ids(self, version: str) -> None:
        """The ids Planhat knows (from its REST API, cached in the store) and the hold.

        A dry run keeps the ids in memory and holds nothing: it stores nothing.
        """
        settings = self.settings
        self.rest_client = PlanhatRestClient(
            settings.planhat_api_url,
            settings.planhat_api_token,
            **self._http_options(version),
        )
        hold: Hold | None = None
        if not settings.dry_run:
            hold = Hold(self._shared_store())
        known = KnownIds(
            self.rest_client,
            models_for(settings.mapped_fields),
            settings.planhat_page_sizes,
            settings.planhat_ids_ttl_minutes,
            store=self.store,
        )
        assert settings.on_unmatched is not None
        self.unmatched = UnmatchedPolicy(
            settings.on_unmatched, known, hold, settings.hold_days, self.dead_letter, self.report
        )

    def start(self) -> None:
        """Before the first line of input: load the ids when due (401/403 stops the run here,
        naming planhat_api_token), send the held activities that now match, expire the rest."""
        unmatched = self.unmatched
        if unmatched is None:
            return
        unmatched.known.refresh_if_due()
        if unmatched.hold is None:
            return
        unmatched.release(self._release)
        unmatched.expire()

    def _release(self, items: list[Item]) -> None:
        """Deliver held activities (positions: their index); each acknowledged chunk leaves the
        hold in the step that records it, so a kill can leave at most the POST in flight held
        (and the ledger skips that one next time)."""
        unmatched = self.unmatched
        assert unmatched is not None and unmatched.hold is not None
        hold = unmatched.hold
        done = 0

        def progress(following: int | None) -> None:
            nonlocal done
            end = len(items) if following is None else following
            hold.delete([item[0] for item in items[done:end]])
            done = end

        self.deliver(items, progress, released=True)

    def count_shape_problem(self, problem: str) -> None:
        self.report.shape_problems[problem] += 1

    def _unique(self, items: Sequence[Item]) -> list[Item]:
        """Drop ids seen earlier in this batch or already acknowledged (the ledger)."""
        ids = list(map(_ID, items))
        if len(set(ids)) == len(ids):  # the usual batch: no id twice, checked in C
            unique = list(items)
        else:
            seen: set[str] = set()
            unique = []
            for item in items:
                if item[0] not in seen:
                    seen.add(item[0])
                    unique.append(item)
            ids = list(map(_ID, unique))
        if self.ledger is not None and unique:
            known = self.ledger.known(ids, list(map(_DATE, unique)))
            if known:
                unique = [item for item in unique if item[0] not in known]
        self.report.duplicates_skipped += len(items) - len(unique)
        return unique

    def _chunks(self, items: list[Item]) -> Iterator[list[Item]]:
        """Split so every POST body (``[`` + items joined by ``,`` + ``]``) fits the limit."""
        # n bodies cost their bytes, n - 1 commas and the brackets: the bytes plus n, plus 1.
        limit = self.settings.max_request_bytes - 1
        if sum(map(len, map(_BODY, items))) + len(items) <= limit:
            # The usual batch fits one POST: sized in C, no Python loop per item (this runs
            # in the thread that sends, holding the GIL the input thread waits for).
            if items:
                yield items
            return
        chunk: list[Item] = []
        size = 0
        for item in items:
            cost = len(item[1]) + 1
            if chunk and size + cost > limit:
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += cost
        if chunk:
            yield chunk

    def _roll_up(self, items: list[Item]) -> tuple[list[Item], dict[int, list[tuple[str, str]]]]:
        """Activities of the ``rollup`` actions, grouped; ``{id(item): (id, date) of each event
        it stands for}``.

        After the ledger's dedupe, so a replayed event is not counted twice in a roll-up; a
        rolled-up activity takes the first event's id and position, and every event's id is
        recorded when it is acknowledged.
        """
        rollup = self.settings.rollup
        if rollup is None:
            return items, {}
        decoded = {
            i: orjson.loads(item[1]) for i, item in enumerate(items) if rollup.applies(item[2])
        }
        if not decoded:
            return items, {}
        out = [item for i, item in enumerate(items) if i not in decoded]
        members: dict[int, list[tuple[str, str]]] = {}
        for group in rollup.groups(decoded.items()):
            first = items[group[0]]
            if len(group) == 1:
                rolled = (first[0], first[1], first[2], first[3], first[4])
            else:
                body = orjson.dumps(combine([decoded[i] for i in group]))
                rolled = (first[0], body, first[2], first[3], first[4])
            members[id(rolled)] = [(items[i][0], items[i][4]) for i in group]
            out.append(rolled)
        out.sort(key=lambda item: item[3])
        return out, members

    def deliver(
        self,
        items: Sequence[Item],
        progress: Callable[[int | None], None],
        seen: Sequence[Seen] = (),
        *,
        stream: str = "",
        released: bool = False,
    ) -> None:
        """Send (or write) a batch; record each acknowledged chunk before the next one.

        The batch's metric points go first: once they are acknowledged, the first activity is
        the oldest unacknowledged part of the batch. ``progress(position)`` gets the input
        position of the first activity not yet acknowledged after each step, so STATE can
        advance chunk by chunk when a run stops half-way through a split batch (``None``: all
        acknowledged).
        """
        if seen and self.metrics is not None:
            self.metrics.deliver(seen)
            progress(items[0][3] if items else None)
        unique = self._unique(items)
        unmatched_ids: frozenset[str] = frozenset()
        if self.unmatched is not None and not released:
            # Held (stored) or dead-lettered here, before any chunk: settled for STATE.
            unique, unmatched_ids = self.unmatched.split(unique, stream)
        unique, members = self._roll_up(unique)
        chunks = list(self._chunks(unique))
        for number, chunk in enumerate(chunks):
            bodies = list(map(_BODY, chunk))
            if self.dry_run_file is not None:
                self.dry_run_file.write(bodies)
            else:
                assert self.client is not None
                self.client.send(b"[" + b",".join(bodies) + b"]", len(chunk))
            with self.guard.critical():
                # Without roll-ups (the usual run), no look-up per item.
                rolled = [members[id(i)] for i in chunk if id(i) in members] if members else []
                if self.ledger is not None:
                    if rolled:
                        events = [
                            e
                            for item in chunk
                            for e in members.get(id(item), ((item[0], item[4]),))
                        ]
                        ids, dates = [e[0] for e in events], [e[1] for e in events]
                    else:
                        ids, dates = list(map(_ID, chunk)), list(map(_DATE, chunk))
                    self._record(ids, dates, len(chunk))
                with self.report.lock:
                    if self.dry_run_file is not None:
                        self.report.dry_run_written += len(chunk)
                    elif released:
                        self.report.released += len(chunk)
                    else:
                        self.report.sent += len(chunk)
                    if unmatched_ids:
                        self.report.sent_unmatched += sum(
                            1 for item in chunk if item[0] in unmatched_ids
                        )
                    self.report.count_actions(map(_ACTION, chunk))
                    self.report.rollup_activities += len(rolled)
                    self.report.rollup_events += sum(len(group) for group in rolled)
                following = chunks[number + 1][0][3] if number + 1 < len(chunks) else None
                progress(following)

    def _record(self, ids: list[str], dates: list[str], activities: int) -> None:
        """Record an acknowledged chunk; if the ledger cannot, stop before any STATE covers it."""
        assert self.ledger is not None
        try:
            self.ledger.record(ids, dates=dates)
        except StoreError as exc:
            with self.report.lock:
                self.report.send_stats.unconfirmed_requests += 1
            raise StoreError(
                f"Planhat acknowledged {activities} activities but recording them in the ledger "
                f"failed: {exc}. The run stops here and no STATE covers them, so a replay may "
                "re-send them (counted in unconfirmed_requests)."
            ) from None

    def submit(self, items: Sequence[Item], seen: Sequence[Seen] = (), stream: str = "") -> None:
        """``deliver`` in the sender thread, once the batch before it is acknowledged.

        Raises the previous batch's failure instead. The batch was handed over to ``IN_FLIGHT``
        in ``checkpoints`` (``PlanhatSink.start_drain``); each acknowledged step is reported
        there from the sender thread, and the whole batch once delivered. A failed batch is
        never reported, so STATE stays before it.
        """
        self.sender.wait()
        checkpoints = self.checkpoints

        def step(following: int | None) -> None:
            checkpoints.acknowledged(IN_FLIGHT, following)

        def job() -> None:
            self.deliver(items, step, seen, stream=stream)
            checkpoints.acknowledged(IN_FLIGHT)

        self.sender.submit(job)

    def abandon(self) -> None:
        """Cut the POST in flight, if any (a second signal): it ends as unconfirmed."""
        if self.sender.busy:
            for client in (self.client, self.metric_client):
                if client is not None:
                    client.abandon()

    def close(self) -> None:
        """Release files, connections and the sender thread; once (later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        if self.sender.busy:
            # Only after an unexpected error: never close the ledger under a commit.
            self.abandon()
            self.sender.wait_idle(timeout=self.settings.request_timeout + 5)
        self.sender.close()
        closers = (
            self.client,
            self.metric_client,
            self.dry_run_file,
            self.ledger,
            self.dead_letter,
            self.rest_client,
            # Opened here (not by Ledger), shared by the ledger, metric counts and the hold.
            self.store,
        )
        for closer in closers:
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # closing must not hide the run's real outcome
                    logger.debug("close failed: %s", exc)
