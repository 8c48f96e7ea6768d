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


def _reopen(store: Store, tenant: str) -> Store:
    """The same store as another tenant."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, tenant)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, tenant)


def _time(ledger: Ledger, batch: list[str]) -> tuple[float, float]:
    """ms to look ``batch`` up and then to record it (what a run does per batch)."""
    start = time.perf_counter()
    assert not ledger.known(batch)
    middle = time.perf_counter()
    ledger.record(batch)
    end = time.perf_counter()
    return (middle - start) * 1000, (end - middle) * 1000


def _measure(
    ledger: Ledger, next_id: int, samples: int, label: str
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``samples`` batches of new ids into ``ledger``, each followed by one into an empty ledger.

    The empty ledger is a new tenant in the same store (no tables of its own yet), opened
    before the clock starts. Full and empty alternate batch by batch, so both see the same
    load on a shared machine and their ratio holds even when the load drifts.
    """
    full, empty = [], []
    for n in range(samples):
        full.append(_time(ledger, _ids(next_id + 2 * n * BATCH, BATCH)))
        other = Ledger(_reopen(ledger.store, f"{TOKEN}-{label}-{n}"), ttl_days=7)
        empty.append(_time(other, _ids(next_id + (2 * n + 1) * BATCH, BATCH)))
        other.store.close()
    return full, empty


def _all_ids(store: Store) -> int:
    """Ids in the store, every tenant's (the empty ledgers measured beside the full one too)."""
    return sum(
        int(store.execute(f"SELECT COUNT(*) FROM {table}")[0][0])
        for table in store.tables("tp_ledger_")
    )


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
    fill_start = time.perf_counter()
    print(f"\n{store.kind}: {store.location}")
    print(
        "medians of lookup / record / both, ms per 10,000-id batch; each batch into the full"
        " ledger followed by one into an empty ledger (a new tenant)"
    )
    print(
        f"{'ids':>12} {'lookup':>8} {'record':>8} {'both':>8} | {'empty: lookup':>13}"
        f" {'record':>8} {'both':>8} | {'full/empty':>10} {'median pair':>11}"
    )
    for checkpoint in checkpoints:
        _fill(ledger, filled, checkpoint, now)
        filled = checkpoint
        full, empty = _measure(ledger, next_id, samples, str(checkpoint))
        next_id += 2 * samples * BATCH
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
