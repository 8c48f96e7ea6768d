"""The ledger's cost as it grows (issue 15). One command, from the repository root:

    .venv/bin/python benchmarks/ledger.py                       # both backends, 10M ids each
    .venv/bin/python benchmarks/ledger.py --ids 2000000 --backend sqlite

Fills a ledger to N ids through ``Ledger`` (what a run calls), spread over today and the 7 days
before as a 7-day TTL keeps them (one table per day, today's holding an eighth), and at 0, 1M,
5M and N ids times what a run does per 10,000-id batch: look the batch up (``known``), then
record it (``record``), median of ``--samples`` batches of new ids. Then prints the bytes per
id on disk, and the time to prune one day (a whole table dropped) and to prune nothing.

PostgreSQL: ``--url`` to use a server (a database you may write in), else a throwaway server
is started from the PostgreSQL binaries the tests use (``tests/support/postgres.py``).
"""

from __future__ import annotations

import argparse
import os
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


def _reopen(store: Store) -> Store:
    """The same store as another tenant."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, TOKEN + "-other")
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, TOKEN + "-other")


def _measure(ledger: Ledger, next_id: int, samples: int) -> tuple[float, float, float]:
    """Median ms of lookup, record, and both, for ``samples`` batches of new ids."""
    lookups, records = [], []
    for n in range(samples):
        batch = _ids(next_id + n * BATCH, BATCH)
        start = time.perf_counter()
        assert not ledger.known(batch)
        middle = time.perf_counter()
        ledger.record(batch)
        end = time.perf_counter()
        lookups.append((middle - start) * 1000)
        records.append((end - middle) * 1000)
    both = [a + b for a, b in zip(lookups, records, strict=True)]
    return statistics.median(lookups), statistics.median(records), statistics.median(both)


def _fill(ledger: Ledger, filled: int, upto: int, now: float) -> None:
    """Record ids ``filled`` to ``upto`` as a 7-day ledger holds them at every size.

    Batch after batch goes round the 7 days before today and today, so at each checkpoint every
    day's table holds an eighth of the ids (today's included: the end of a busy day, when the
    measured batches record into the fullest table and the lookups probe the most). Within a
    day the batches are spread over its 24 hours, as a run every so often would record them.
    """
    for start in range(filled, upto, BATCH):
        number = start // BATCH
        day_back = number % 8
        hour = (number // 8) % 24
        at = (int(now) // DAY - day_back) * DAY + hour * 3600 + 60
        ledger.record(_ids(start, min(BATCH, upto - start)), at)
        if number % 100 == 99:
            print(f"  filled {start + BATCH:,}", file=sys.stderr, flush=True)


def run(store: Store, total: int, samples: int, checkpoints: list[int]) -> None:
    ledger = Ledger(store, ttl_days=7)
    now = time.time()
    filled = 0
    next_id = 10**9  # measured batches use ids far from the fill's
    base = None
    fill_start = time.perf_counter()
    print(f"\n{store.kind}: {store.location}")
    print(f"{'ids':>12} {'lookup ms':>10} {'record ms':>10} {'both ms':>9} {'x empty':>8}")
    for checkpoint in checkpoints:
        _fill(ledger, filled, checkpoint, now)
        filled = checkpoint
        lookup, record, both = _measure(ledger, next_id, samples)
        next_id += samples * BATCH
        base = base or both
        print(f"{filled:>12,} {lookup:>10.1f} {record:>10.1f} {both:>9.1f} {both / base:>7.2f}x")
        sys.stdout.flush()
    # The machine's load changes over a long fill: measure an empty ledger again now, as another
    # tenant in the same store (it has no tables yet), beside the full one.
    other = Ledger(_reopen(store), ttl_days=7)
    lookup, record, again = _measure(other, next_id, samples)
    other.store.close()
    print(f"{'empty, again':>12} {lookup:>10.1f} {record:>10.1f} {again:>9.1f}")
    print(f"full / empty measured last: {both / again:.2f}x")
    fill_seconds = time.perf_counter() - fill_start
    count = ledger.count()
    size = _size(store)
    print(f"fill + measure: {fill_seconds:.0f}s; {count:,} ids; {size / count:.1f} bytes per id")
    start = time.perf_counter()
    pruned = ledger.prune(6)  # the oldest day only
    took = time.perf_counter() - start
    print(f"prune one day: {pruned:,} ids in {took * 1000:.0f} ms")
    start = time.perf_counter()
    nothing = ledger.prune(6)
    took = time.perf_counter() - start
    print(f"prune with nothing to prune: {nothing} ids in {took * 1000:.1f} ms")


def main() -> None:
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
