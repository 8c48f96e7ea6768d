"""Crash and resume: ``kill -9`` the CLI at random points, resume as Meltano would, count.

Each chain runs the real ``target-planhat`` on a few hundred events (small batches, dedupe on, the
ledger in tmp) against the receiver on 127.0.0.1, kills it with SIGKILL at a random point (while
the receiver holds one of its POSTs, right after an answer, or partway through its input), then
reruns it on the input replayed from the record after the last bookmark any run emitted (the
bookmark is the record's position), again and again, and finally lets a run finish.

What must hold, across all runs of a chain:

- nothing lost: every event reached the receiver;
- exactly once, except for the one POST a kill can legitimately leave behind: the last one the
  killed run sent, which the receiver kept (its answer lost to the kill, or answered but the kill
  landed before the ledger commit). Every duplicate must come from such a POST, and each of
  those is checked against the ledger: its ids were not committed;
- the ledger holds exactly what was acknowledged: every POST of a run before its last one is in
  it (the target commits before sending the next);
- no STATE ahead of Planhat: every bookmark a run wrote covers only kept events.

The harness is ``tests/support/crash_chain.py``; ``scripts/crash_soak.py`` runs it with more kill
points and prints the figures.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import TARGET_BIN, base_config
from tests.support.crash_chain import (
    BATCH,
    OVERLAP,
    check_chain,
    jittery_planhat,
    resume_input,
    run_chain,
)
from tests.support.receiver import TOKEN, PlanhatReceiver

CHAINS = [(1, 7), (2, 7), (3, 8)]  # (seed, kills): 22 kill points


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "kills"), CHAINS)
def test_kill_9_and_resume_delivers_every_event_once(tmp_path: Path, seed: int, kills: int):
    rng = random.Random(seed)
    with PlanhatReceiver(jittery_planhat(seed)) as planhat:
        chain = run_chain(tmp_path, planhat, rng, kills=kills)
    findings = check_chain(chain)
    print(f"seed {seed}: {findings}")
    assert findings.kill_points == kills  # every kill lands while the target runs
    # The ledger is what keeps replays exact: resumed runs skipped acknowledged ids.
    assert findings.duplicated_events <= findings.duplicating_kills * BATCH


def test_resume_without_ledger_would_duplicate(tmp_path: Path) -> None:
    """The control: with ``dedupe: false`` the same replay re-sends what was acknowledged."""
    config = base_config(tmp_path, tenant_token="", batch_size_rows=BATCH)
    with PlanhatReceiver() as planhat:
        config.update(tenant_token=TOKEN, api_url=planhat.url, dedupe=False)
        (tmp_path / "config.json").write_text(json.dumps(config))
        for first in (1, 1):
            subprocess.run(
                [TARGET_BIN, "--config", str(tmp_path / "config.json")],
                input=resume_input(first, 50).encode(),
                capture_output=True,
                check=True,
                cwd=tmp_path,
                env={**os.environ},
            )
    assert set(planhat.kept_counts().values()) == {2}


@pytest.mark.parametrize(("seed", "kills"), [(4, 7)])
def test_kill_9_in_fresh_folders_with_the_ledger_in_postgres(
    tmp_path: Path, postgres_url: str, seed: int, kills: int
) -> None:
    """An ephemeral worker: every run in a new folder, the ledger in PostgreSQL: exactly once."""
    rng = random.Random(seed)
    with PlanhatReceiver(jittery_planhat(seed)) as planhat:
        chain = run_chain(
            tmp_path,
            planhat,
            rng,
            kills=kills,
            ledger={"ledger_url": postgres_url},
            overlap=OVERLAP,
        )
    findings = check_chain(chain)
    print(f"postgres, seed {seed}: {findings}")
    assert findings.kill_points >= 1
    assert findings.duplicated_events <= findings.duplicating_kills * BATCH
    assert findings.skipped_as_duplicates > 0  # replays were recognised across folders


def test_kill_9_in_fresh_folders_with_a_local_sqlite_ledger_duplicates(tmp_path: Path) -> None:
    """The control: the same chain with the default SQLite file, lost with each folder."""
    rng = random.Random(4)
    with PlanhatReceiver(jittery_planhat(4)) as planhat:
        chain = run_chain(tmp_path, planhat, rng, kills=7, ledger={}, overlap=OVERLAP)
    duplicated = sum(c - 1 for c in chain.counts.values())
    print(f"sqlite in fresh folders: {duplicated} duplicated events, {len(chain.kills)} kills")
    assert set(chain.counts) == set(range(1, chain.events + 1))
    # A fresh ledger recognises nothing: the replayed overlap went out again.
    assert duplicated >= OVERLAP
    assert all((r.report or {}).get("duplicates_skipped", 0) == 0 for r in chain.runs)
