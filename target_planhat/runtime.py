"""Everything one run shares: settings, report, ledger, the Planhat client (or dry-run file).

``deliver`` is the one place a batch becomes acknowledged: sent (or written), then recorded in the
ledger, then counted, before any STATE that covers it can be written. ``submit`` runs it in the
sender thread (``sender.py``), one batch at a time, while the main thread builds the next batch;
``in_flight_from`` is the input position of the first activity of that batch not yet acknowledged.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence

from target_planhat.ledger import Ledger
from target_planhat.planhat import PlanhatClient
from target_planhat.rejects import DeadLetterFile
from target_planhat.report import DeliveryReport
from target_planhat.sender import Sender
from target_planhat.settings import Settings
from target_planhat.shutdown import ShutdownGuard

logger = logging.getLogger("target_planhat")

Item = tuple[str, bytes, str, int]  # (dedupe id, encoded activity, action, input position)


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
        self.settings = settings
        self.guard = ShutdownGuard()
        self.report = DeliveryReport(settings.report_path)
        self.dead_letter = DeadLetterFile(settings.dead_letter_path)
        self.seq = 0  # RECORD messages read so far
        self.line_number: int | None = None
        self.acked_since_check = False
        self.sender = Sender(check=self.guard.check)
        self.in_flight_from = math.inf
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
                request_timeout=settings.request_timeout,
                max_retry_seconds=settings.max_retry_seconds,
                guard=self.guard,
                user_agent=f"target-planhat/{version}".rstrip("/"),
            )
            self.report.send_stats = self.client.stats
        self.ledger: Ledger | None = None
        if settings.dedupe and not settings.dry_run:
            # Dry run never touches the ledger: a later live run must still send everything.
            self.ledger = Ledger(settings.ledger_path, settings.ledger_ttl_days)
            self.report.ledger_pruned = self.ledger.pruned

    def count_shape_problem(self, problem: str) -> None:
        self.report.shape_problems[problem] += 1

    def _unique(self, items: Sequence[Item]) -> list[Item]:
        """Drop ids seen earlier in this batch or already acknowledged (the ledger)."""
        seen: set[str] = set()
        unique: list[Item] = []
        for item in items:
            if item[0] not in seen:
                seen.add(item[0])
                unique.append(item)
        if self.ledger is not None and unique:
            known = self.ledger.known([item[0] for item in unique])
            if known:
                unique = [item for item in unique if item[0] not in known]
        self.report.duplicates_skipped += len(items) - len(unique)
        return unique

    def _chunks(self, items: list[Item]) -> Iterator[list[Item]]:
        """Split so every POST body (``[`` + items joined by ``,`` + ``]``) fits the limit."""
        limit = self.settings.max_request_bytes - 2
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

    def deliver(self, items: Sequence[Item], progress: Callable[[float], None]) -> None:
        """Send (or write) a batch; record each acknowledged chunk before the next one.

        ``progress(position)`` gets the input position of the first activity not yet
        acknowledged after each chunk, so STATE can advance chunk by chunk when a run stops
        half-way through a split batch.
        """
        unique = self._unique(items)
        chunks = list(self._chunks(unique))
        for number, chunk in enumerate(chunks):
            bodies = [item[1] for item in chunk]
            if self.dry_run_file is not None:
                self.dry_run_file.write(bodies)
            else:
                assert self.client is not None
                self.client.send(b"[" + b",".join(bodies) + b"]", len(chunk))
            with self.guard.critical():
                if self.ledger is not None:
                    self.ledger.record([item[0] for item in chunk])
                with self.report.lock:
                    if self.dry_run_file is not None:
                        self.report.dry_run_written += len(chunk)
                    else:
                        self.report.sent += len(chunk)
                    for item in chunk:
                        self.report.count_action(item[2])
                following = chunks[number + 1][0][3] if number + 1 < len(chunks) else math.inf
                progress(following)

    def submit(
        self,
        items: Sequence[Item],
        progress: Callable[[float], None],
        done: Callable[[], None],
    ) -> None:
        """``deliver`` in the sender thread, once the batch before it is acknowledged.

        Raises the previous batch's failure instead. ``progress`` runs as in ``deliver``, and
        ``done`` after the whole batch; both in the sender thread.
        """
        self.sender.wait()
        self.in_flight_from = items[0][3]

        def step(following: float) -> None:
            self.in_flight_from = following
            progress(following)

        def job() -> None:
            self.deliver(items, step)
            self.in_flight_from = math.inf
            done()

        self.sender.submit(job)

    def abandon(self) -> None:
        """Cut the POST in flight, if any (a second signal): it ends as unconfirmed."""
        if self.client is not None and self.sender.busy:
            self.client.abandon()

    def acked(self) -> None:
        self.acked_since_check = True

    def close(self) -> None:
        if self.sender.busy:
            # Only after an unexpected error: never close the ledger under a commit.
            self.abandon()
            self.sender.wait_idle(timeout=self.settings.request_timeout + 5)
        self.sender.close()
        for closer in (self.client, self.dry_run_file, self.ledger, self.dead_letter):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # closing must not hide the run's real outcome
                    logger.debug("close failed: %s", exc)
