"""The ledger's cost as it grows (issue 15). One command, from the repository root:

    .venv/bin/python benchmarks/ledger.py                       # both backends, 10M ids each
    .venv/bin/python benchmarks/ledger.py --ids 2000000 --backend sqlite

Fills a ledger to N ids through ``Ledger`` as a run records them: an Amplitude project whose N
events fill a 7-day TTL window (8 UTC days, today's included), exported in time order (hourly
exports: each id acknowledged an hour after its event), in 10,000-id batches with their
activities' dates. At 0, 1M, 5M and N ids it times what a run does per 10,000-id batch: look
the batch up (``known``), then record it (``record``), for the next events in time, median of
``--samples`` batches, each followed by one into an empty ledger (a new tenant). Then prints
the bytes per id on disk, the time to prune the oldest day (a whole table dropped) and to
prune nothing, and how a batch of late events costs (each a random time of the window).

PostgreSQL: ``--url`` to use a server (a database you may write in), else a throwaway server
is started from the PostgreSQL binaries the tests use (``tests/support/postgres.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from target_planhat.ledger import DAY, Ledger  # noqa: E402
from target_planhat.store import PostgresStore, SQLiteStore, Store  # noqa: E402

TOKEN = "bench-tenant-token"
BATCH = 10_000


def _ids(start: int, count: int) -> list[str]:
    # The shape of Amplitude's $insert_id: a UUID-like string.
    return [
        f"{i:08x}-5e1c-4b7a-9f3d-{i * 2654435761 % 16**12:012x}"
        for i in range(start, start + count)
    ]


def _size(store: Store) -> int:
    if isinstance(store, SQLiteStore):
        store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(store.path)
    rows = store.execute(
        "SELECT COALESCE(SUM(pg_total_relation_size(('target_planhat.' || tablename)::regclass)),"
        " 0) FROM pg_tables WHERE schemaname = 'target_planhat' AND tablename LIKE 'tp_ledger_%'"
    )
    return int(rows[0][0])


def _reopen(store: Store, tenant: str) -> Store:
    """The same store as another tenant."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, tenant)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, tenant)


class Events:
    """The project's events in time order: the ``k``-th at ``start + k * step`` seconds."""

    def __init__(self, total: int, now: float) -> None:
        self.step = 8 * DAY / max(total, 1)
        self.start = now - 8 * DAY - 3600  # the last one an hour before now, as exported
        self.next = 0

    def date(self, k: int) -> str:
        when = self.start + k * self.step
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))

    def take(self, count: int) -> tuple[list[str], list[str], float]:
        """The next ``count`` events: ids, dates, and when the batch is acknowledged."""
        first = self.next
        self.next += count
        ids = _ids(first, count)
        dates = [self.date(k) for k in range(first, first + count)]
        return ids, dates, self.start + (first + count) * self.step + 3600


def _time(ledger: Ledger, batch: tuple[list[str], list[str], float]) -> tuple[float, float]:
    """ms to look ``batch`` up and then to record it (what a run does per batch)."""
    ids, dates, at = batch
    start = time.perf_counter()
    assert not ledger.known(ids, dates)
    middle = time.perf_counter()
    ledger.record(ids, at=at, dates=dates)
    end = time.perf_counter()
    return (middle - start) * 1000, (end - middle) * 1000


def _measure(
    ledger: Ledger, events: Events, samples: int, label: str
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``samples`` batches of the next events into ``ledger``, each followed by the same
    number of events into an empty ledger.

    The empty ledger is a new tenant in the same store (no tables of its own yet), opened
    before the clock starts. Full and empty alternate batch by batch, so both see the same
    load on a shared machine and their ratio holds even when the load drifts.
    """
    full, empty = [], []
    for n in range(samples):
        batch = events.take(BATCH)
        full.append(_time(ledger, batch))
        other = Ledger(_reopen(ledger.store, f"{TOKEN}-{label}-{n}"), ttl_days=7)
        empty.append(_time(other, (_ids(10**9 + events.next, BATCH), *batch[1:])))
        other.store.close()
    return full, empty


def _all_ids(store: Store) -> int:
    """Ids in the store, every tenant's (the empty ledgers measured beside the full one too)."""
    return sum(
        int(store.execute(f"SELECT COUNT(*) FROM {table}")[0][0])
        for table in store.tables("tp_ledger_")
        if table != "tp_ledger_last"
    )


def _fill(ledger: Ledger, events: Events, upto: int) -> None:
    """Record the next events until the ledger holds ``upto`` ids."""
    while events.next < upto:
        ids, dates, at = events.take(min(BATCH, upto - events.next))
        ledger.record(ids, at=at, dates=dates)
        if events.next % 1_000_000 < BATCH:
            print(f"  filled {events.next:,}", file=sys.stderr, flush=True)


def _late(ledger: Ledger, events: Events, now: float, seed: int) -> float:
    """ms to look up and record a batch of late events, each at a random time of the window."""
    rng = random.Random(seed)
    ks = [rng.randrange(events.next) for _ in range(BATCH)]
    ids = _ids(2 * 10**9 + seed * BATCH, BATCH)
    return sum(_time(ledger, (ids, [events.date(k) for k in ks], now)))


def run(store: Store, total: int, samples: int, checkpoints: list[int]) -> None:
    ledger = Ledger(store, ttl_days=7)
    now = time.time()
    events = Events(total, now)
    fill_start = time.perf_counter()
    print(f"\n{store.kind}: {store.location}")
    print(
        "medians of lookup / record / both, ms per 10,000-id batch of the next events; each"
        " followed by one into an empty ledger (a new tenant)"
    )
    print(
        f"{'ids':>12} {'lookup':>8} {'record':>8} {'both':>8} | {'empty: lookup':>13}"
        f" {'record':>8} {'both':>8} | {'full/empty':>10} {'median pair':>11}"
    )
    for checkpoint in checkpoints:
        _fill(ledger, events, checkpoint)
        filled = events.next
        full, empty = _measure(ledger, events, samples, str(checkpoint))
        f_both = [a + b for a, b in full]
        e_both = [a + b for a, b in empty]
        median = statistics.median
        pairs = median(f / e for f, e in zip(f_both, e_both, strict=True))
        print(
            f"{filled:>12,} {median(a for a, _ in full):>8.1f} {median(b for _, b in full):>8.1f}"
            f" {median(f_both):>8.1f} | {median(a for a, _ in empty):>13.1f}"
            f" {median(b for _, b in empty):>8.1f} {median(e_both):>8.1f} |"
            f" {median(f_both) / median(e_both):>9.2f}x {pairs:>10.2f}x"
        )
        sys.stdout.flush()
    fill_seconds = time.perf_counter() - fill_start
    count = ledger.count()
    size = _size(store)
    every = _all_ids(store)
    print(
        f"fill + measure: {fill_seconds:.0f}s; {count:,} ids ({every:,} with the empty"
        f" ledgers'); {size / every:.1f} bytes per id"
    )
    tables = ledger._partitions()
    oldest = min(tables)
    last = int(store.execute("SELECT last FROM tp_ledger_last WHERE tbl = ?", (oldest,))[0][0])
    ttl = (now - last) / DAY - 1e-6  # just short of the oldest day's last write: it goes
    rows = ledger._rows(oldest)
    start = time.perf_counter()
    pruned = ledger.prune(ttl)
    took = time.perf_counter() - start
    print(f"prune the oldest day: {pruned:,} ids ({rows:,} in it) in {took * 1000:.0f} ms")
    start = time.perf_counter()
    nothing = ledger.prune(ttl)
    took = time.perf_counter() - start
    print(f"prune with nothing to prune: {nothing} ids in {took * 1000:.1f} ms")
    late = [_late(ledger, events, now, seed) for seed in range(3)]
    print(
        f"a batch of late events (each a random time of the window, {len(ledger._partitions())}"
        f" day tables): {statistics.median(late):.0f} ms"
    )


def main() -> None:
    # One WARNING per new tenant ("new and empty") is what a run should say, not a benchmark.
    logging.getLogger("target_planhat.ledger").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--url", help="PostgreSQL URL (default: a throwaway local server)")
    parser.add_argument("--samples", type=int, default=5, help="batches timed per checkpoint")
    args = parser.parse_args()
    checkpoints = sorted({c for c in (0, 1_000_000, 5_000_000) if c < args.ids} | {args.ids})
    print(f"N = {args.ids:,} ids, batches of {BATCH:,}, {os.cpu_count()} CPUs")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
            store = SQLiteStore(Path(tmp) / "ledger.sqlite", TOKEN)
            try:
                run(store, args.ids, args.samples, checkpoints)
            finally:
                store.close()
    if args.backend in ("postgres", "both"):
        server = None
        url = args.url
        if url is None:
            from tests.support.postgres import start_server

            server = start_server()
            if server is None:
                sys.exit("no PostgreSQL server binaries; pass --url")
            url = server.url(server.new_database())
        try:
            store = PostgresStore(url, TOKEN)
            try:
                run(store, args.ids, args.samples, checkpoints)
            finally:
                store.close()
        finally:
            if server is not None:
                server.close()


if __name__ == "__main__":
    main()
