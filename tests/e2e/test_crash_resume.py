"""Crash and resume: ``kill -9`` the CLI at random points, resume as Meltano would, count.

Each chain runs the real ``target-planhat`` on a few hundred events (small batches, dedupe on, the
ledger in tmp) against the receiver on 127.0.0.1, kills it with SIGKILL at a random moment, then
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

``scripts/crash_soak.py`` runs the same harness with more kill points and prints the figures.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from target_planhat.ledger import Ledger
from target_planhat.settings import DEFAULT_LEDGER_PATH, compile_settings
from target_planhat.store import open_store
from tests.support.cli import TARGET_BIN, base_config, event, schema_message, state_message
from tests.support.receiver import TOKEN, PlanhatReceiver, Received, Reply

STREAM = "events"
STATE_EVERY = 7
BATCH = 25
OVERLAP = 20  # records before the bookmark a tap re-exports (its boundary hour)


def insert_id(n: int) -> str:
    return event(n)["$insert_id"]


def resume_input(first: int, last: int) -> str:
    """Records ``first..last``, a STATE ``{"n": position}`` every STATE_EVERY records and last."""
    lines = [json.dumps(schema_message(STREAM))]
    for n in range(first, last + 1):
        lines.append(json.dumps({"type": "RECORD", "stream": STREAM, "record": event(n)}))
        if n % STATE_EVERY == 0 or n == last:
            lines.append(json.dumps(state_message(STREAM, n)))
    return "\n".join(lines) + "\n"


def jittery_planhat(seed: int, max_delay: float = 0.02):
    """200 after a random short delay, so a kill can land while a POST is in flight."""
    rng = random.Random(seed)

    def script(index: int, body: bytes) -> Reply:
        return Reply(delay=rng.uniform(0, max_delay))

    return script


@dataclass
class Run:
    index: int
    first: int  # first record position of its input
    kill: str  # how it was killed ("" if it was not)
    killed_at: float | None = None  # monotonic, just before SIGKILL
    returncode: int | None = None
    bookmarks: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    ledger: set[str] = field(default_factory=set)
    report: dict[str, Any] | None = None
    stderr: str = ""

    @property
    def kept(self) -> list[Received]:
        return [r for r in self.requests if r.kept]


@dataclass
class Chain:
    events: int
    runs: list[Run]
    counts: Counter

    @property
    def kills(self) -> list[Run]:
        return [r for r in self.runs if r.killed_at is not None]


def _read_ledger(config: dict[str, Any], cwd: Path, events: int) -> set[str]:
    """The insert ids of events ``1..events`` the run's ledger holds (SQLite or PostgreSQL)."""
    ids = [insert_id(n) for n in range(1, events + 1)]
    if config.get("ledger_url"):
        ledger = Ledger(open_store(compile_settings(config)))
    else:
        path = cwd / Path(config.get("ledger_path") or DEFAULT_LEDGER_PATH)
        if not path.exists():
            return set()
        ledger = Ledger(path, ttl_days=10**6, tenant_token=TOKEN)
    try:
        return ledger.known(ids)
    finally:
        ledger.store.close()


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 30) -> bool:
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.0005)
    raise AssertionError("timed out waiting for the target")


def run_chain(
    tmp_path: Path,
    planhat: PlanhatReceiver,
    rng: random.Random,
    *,
    kills: int = 8,
    batch: int = BATCH,
    posts_per_kill: int = 8,
    ledger: dict[str, Any] | None = None,
    overlap: int = 0,
) -> Chain:
    """``kills`` killed runs, each resuming from the last bookmark, then one run to the end.

    A run is killed around one of its first ``posts_per_kill`` POSTs (or at a random time), so
    the input (sized for that) lasts until the last kill. Each run works in a fresh folder (an
    ephemeral worker); ``ledger`` replaces ``ledger_path`` in the config: ``{"ledger_url": ...}``
    for PostgreSQL, ``{}`` for the default relative path (a new SQLite file in every folder).
    """
    events = (kills * (posts_per_kill + 1) // 2 + 4) * batch
    config = base_config(
        tmp_path,
        tenant_token=TOKEN,
        api_url=planhat.url,
        batch_size_rows=batch,
        checkpoint_seconds=1,
        request_timeout=10,
        max_retry_seconds=30,
        dedupe=True,
    )
    if ledger is not None:
        config.pop("ledger_path")
        config.update(ledger)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    bookmark = 0
    runs: list[Run] = []
    for index in range(kills + 1):
        first = max(1, bookmark + 1 - overlap)
        remaining_posts = max(1, math.ceil((events - bookmark) / batch))
        if index == kills:
            kill = ""
        elif rng.random() < 0.2:
            kill = "time"  # anywhere, start-up and input reading included
        else:
            kill = "post"  # around a random POST of this run
        run = Run(index, first, kill)
        work = tmp_path / f"run{index}"
        work.mkdir()
        (work / "input.jsonl").write_text(resume_input(first, events))
        base = planhat.arrivals
        with (
            open(work / "input.jsonl", "rb") as stdin,
            open(work / "stdout", "wb") as stdout,
            open(work / "stderr", "wb") as stderr,
        ):
            proc = subprocess.Popen(
                [TARGET_BIN, "--config", str(config_path)],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=work,
            )
            try:
                if kill == "time":
                    deadline = time.monotonic() + rng.uniform(0.05, 0.6)
                    _wait_for(lambda d=deadline: time.monotonic() >= d, proc)
                elif kill == "post":
                    target = base + rng.randint(1, min(remaining_posts, posts_per_kill))
                    if _wait_for(lambda t=target: planhat.arrivals >= t, proc):
                        time.sleep(rng.uniform(0, 0.025))
                if kill and proc.poll() is None:
                    run.killed_at = time.monotonic()
                    proc.send_signal(signal.SIGKILL)
                run.returncode = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert planhat.settle(), "the receiver is still handling a request"
        run.requests = [r for r in planhat.requests() if r.index >= base]
        run.ledger = _read_ledger(config, work, events)
        stdout_text = (work / "stdout").read_text()
        run.bookmarks = [
            json.loads(line)["bookmarks"][STREAM]["n"]
            for line in stdout_text.splitlines()
            if line.strip()
        ]
        run.stderr = (work / "stderr").read_text(errors="replace")
        for line in run.stderr.splitlines():
            if line.startswith('{"type":"planhat_delivery_report"'):
                run.report = json.loads(line)
        runs.append(run)
        if run.killed_at is None:
            assert run.returncode == 0, run.stderr[-3000:]
        else:
            assert run.returncode == -signal.SIGKILL
        if run.bookmarks:
            bookmark = run.bookmarks[-1]
        if run.killed_at is None and index < kills:
            continue  # finished before the kill point: the next run replays nothing new
    counts = planhat.kept_counts()
    return Chain(events, runs, counts)


@dataclass
class Findings:
    kill_points: int
    duplicated_events: int
    duplicating_kills: int
    answered_before_kill: int  # of those: answer written, kill before the ledger commit
    in_flight_at_kill: int  # of those: kill while the receiver was still answering
    skipped_as_duplicates: int  # sum of duplicates_skipped over the runs' reports
    kill_kinds: Counter


def check_chain(chain: Chain) -> Findings:
    """Assert the guarantees for one chain; return its figures."""
    runs = chain.runs
    last = runs[-1]
    assert last.killed_at is None and last.returncode == 0
    # The end is reached by the last run, or earlier by a killed run that got that far (the last
    # run then has nothing left to replay).
    final = [b for run in runs for b in run.bookmarks]
    assert final and final[-1] == chain.events

    # Nothing lost.
    missing = sorted(set(range(1, chain.events + 1)) - set(chain.counts))
    assert not missing, f"events never delivered: {missing[:20]}"
    assert set(chain.counts) == set(range(1, chain.events + 1))

    # Duplicates only from the last kept POST of a killed run, whose ids the ledger lacks.
    allowed: Counter = Counter()
    answered = in_flight = duplicating = 0
    previous_ledger: set[str] = set()
    for run in runs:
        kept = run.kept
        for request in kept[:-1]:
            ids = {a["info"]["n"] for a in request.activities}
            assert {insert_id(n) for n in ids} <= run.ledger, (
                f"run {run.index}: a POST followed by another is not in the ledger"
            )
        if kept and run.killed_at is not None:
            final = kept[-1]
            ids = [a["info"]["n"] for a in final.activities]
            in_ledger = {insert_id(n) for n in ids} & run.ledger
            if not in_ledger:
                allowed.update(ids)
                if any(chain.counts[n] > 1 for n in ids):
                    duplicating += 1
                    if final.answered_at is not None and final.answered_at <= run.killed_at:
                        answered += 1
                        # The kill came right after the answer: the target commits at once, it
                        # does not sit on acknowledged ids.
                        assert run.killed_at - final.answered_at < 0.25
                    else:
                        in_flight += 1
            else:
                # Committed as a whole or not at all (one transaction per chunk).
                assert len(in_ledger) == len(set(ids)), "a POST half in the ledger"
        elif kept:
            assert {insert_id(a["info"]["n"]) for a in kept[-1].activities} <= run.ledger
        assert previous_ledger <= run.ledger, "the ledger lost ids"
        previous_ledger = run.ledger
    for n, count in chain.counts.items():
        assert count == 1 or count <= 1 + allowed[n], (
            f"event {n} kept {count} times; allowed duplicates: {allowed[n]}"
        )

    # STATE never ahead of Planhat: what a run's bookmarks cover was kept by then.
    kept_so_far: set[int] = set()
    previous_bookmark = 0
    for run in runs:
        kept_so_far.update(a["info"]["n"] for r in run.kept for a in r.activities)
        for bookmark in run.bookmarks:
            assert bookmark >= previous_bookmark, "bookmarks went backwards"
            previous_bookmark = bookmark
            uncovered = set(range(1, bookmark + 1)) - kept_so_far
            assert not uncovered, (
                f"run {run.index}: STATE n={bookmark} before {sorted(uncovered)[:5]} were kept"
            )
        assert run.first == 1 or run.first - 1 in kept_so_far

    skipped = sum((r.report or {}).get("duplicates_skipped", 0) for r in runs)
    return Findings(
        kill_points=len(chain.kills),
        duplicated_events=sum(c - 1 for c in chain.counts.values()),
        duplicating_kills=duplicating,
        answered_before_kill=answered,
        in_flight_at_kill=in_flight,
        skipped_as_duplicates=skipped,
        kill_kinds=Counter(r.kill for r in chain.kills),
    )


CHAINS = [(1, 7), (2, 7), (3, 8)]  # (seed, kills): 22 kill points


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "kills"), CHAINS)
def test_kill_9_and_resume_delivers_every_event_once(tmp_path: Path, seed: int, kills: int):
    rng = random.Random(seed)
    with PlanhatReceiver(jittery_planhat(seed)) as planhat:
        chain = run_chain(tmp_path, planhat, rng, kills=kills)
    findings = check_chain(chain)
    print(f"seed {seed}: {findings}")
    assert findings.kill_points >= kills - 2  # a run may finish before its kill point
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
