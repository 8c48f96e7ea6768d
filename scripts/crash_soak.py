#!/usr/bin/env python3
"""Crash soak: ``kill -9`` target-planhat at many random points, resume each time, count.

The harness of ``tests/e2e/test_crash_resume.py``, ``tests/support/crash_chain.py`` (the real CLI,
real HTTP to a receiver on 127.0.0.1, dedupe on, resume from the last bookmark as Meltano would),
with more kill points.
Every chain's guarantees are asserted as in the tests; the figures are printed at the end.

    .venv/bin/python scripts/crash_soak.py            # 200 kill points
    .venv/bin/python scripts/crash_soak.py --kills 500 --seed 7 --max-delay 0.05
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.crash_chain import check_chain, jittery_planhat, run_chain  # noqa: E402
from tests.support.receiver import PlanhatReceiver  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="kill points in all (200)")
    parser.add_argument("--per-chain", type=int, default=10, help="kill points per chain (10)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument(
        "--max-delay",
        type=float,
        default=0.02,
        help="the receiver answers after a random delay up to this (0.02 s)",
    )
    args = parser.parse_args()

    print(f"crash soak: {args.kills} kill points, {args.per_chain} per chain, seed {args.seed}")
    started = time.monotonic()
    totals: Counter = Counter()
    kinds: Counter = Counter()
    gaps: list[float] = []  # answer written -> kill, for kills that duplicated an answered POST
    runs = events = chains = 0
    remaining = args.kills
    while remaining > 0:
        seed = args.seed * 1000 + chains
        kills = min(args.per_chain, remaining)
        with tempfile.TemporaryDirectory(prefix="crash-soak-") as tmp:
            with PlanhatReceiver(jittery_planhat(seed, args.max_delay)) as planhat:
                chain = run_chain(Path(tmp), planhat, random.Random(seed), kills=kills)
            try:
                found = check_chain(chain)
            except AssertionError as exc:
                print(f"FAILED in chain {chains} (seed {seed}): {exc}")
                return 1
        chains += 1
        runs += len(chain.runs)
        events += chain.events
        remaining -= max(1, found.kill_points)
        kinds.update(found.kill_kinds)
        totals.update(
            kill_points=found.kill_points,
            duplicated_events=found.duplicated_events,
            duplicating_kills=found.duplicating_kills,
            answered_before_kill=found.answered_before_kill,
            in_flight_at_kill=found.in_flight_at_kill,
            skipped_as_duplicates=found.skipped_as_duplicates,
        )
        for run in chain.kills:
            kept = run.kept
            if kept and kept[-1].answered_at is not None and run.killed_at is not None:
                gap = run.killed_at - kept[-1].answered_at
                if gap >= 0 and not (
                    {f"ins-{a['info']['n']:06d}" for a in kept[-1].activities} <= run.ledger
                ):
                    gaps.append(gap * 1000)
        print(
            f"  chain {chains}: {found.kill_points} kills, "
            f"{found.duplicating_kills} left a duplicated POST, all checks passed",
            flush=True,
        )

    elapsed = time.monotonic() - started
    print()
    print(f"chains {chains}, runs {runs}, events {events}, time {elapsed:.1f}s")
    print(f"kill points: {totals['kill_points']} ({dict(kinds)})")
    print("events lost: 0; STATE ahead of the receiver: never; ledger gaps: none")
    print(
        f"kills that left a duplicated POST: {totals['duplicating_kills']} "
        f"(in flight at the kill: {totals['in_flight_at_kill']}, answered but not yet in "
        f"the ledger: {totals['answered_before_kill']})"
    )
    print(
        f"duplicated events: {totals['duplicated_events']} "
        f"(all from those POSTs, whose answers the kill lost)"
    )
    print(
        f"acknowledged ids skipped on replay (final runs; a killed run writes no report): "
        f"{totals['skipped_as_duplicates']}"
    )
    if gaps:
        print(
            f"answer-to-kill gap for answered-but-unrecorded POSTs: median "
            f"{statistics.median(gaps):.1f} ms, max {max(gaps):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
