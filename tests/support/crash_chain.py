"""The crash/resume harness: run the real CLI, ``kill -9`` it at chosen points, resume it from
the last bookmark as Meltano would, and check what the receiver kept against the ledger.

Used by ``tests/e2e/test_crash_resume.py`` (a few chains) and ``scripts/crash_soak.py`` (many):
the guarantees it checks are listed in the test module's docstring.
"""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class JitteryPlanhat:
    """200 after a random short delay; one chosen request can be held unanswered until released.

    Holding the k-th POST of a run is what makes each kill land while the target is still running
    (it waits for that answer), whatever the machine's speed: no kill depends on timing.
    """

    def __init__(self, seed: int, max_delay: float = 0.02) -> None:
        self.rng = random.Random(seed)
        self.max_delay = max_delay
        self.hold_at: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()

    def hold(self, index: int | None) -> None:
        """Hold the request with receiver index ``index`` (None: hold nothing)."""
        self.hold_at = index
        self.held.clear()
        self.release.clear()

    def __call__(self, index: int, body: bytes) -> Reply:
        if index == self.hold_at:
            self.held.set()
            self.release.wait(120)  # until the test has killed the target
        return Reply(delay=self.rng.uniform(0, self.max_delay))


def jittery_planhat(seed: int, max_delay: float = 0.02) -> JitteryPlanhat:
    return JitteryPlanhat(seed, max_delay)


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


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.0005)
    raise AssertionError("timed out waiting for the target")


def _last_acked(ledger: set[str], events: int) -> int:
    """The highest event number the ledger holds (POSTs are acknowledged in order)."""
    return max((n for n in range(1, events + 1) if insert_id(n) in ledger), default=0)


class _Feeder(threading.Thread):
    """Writes the first ``count`` input lines into the target's stdin and keeps it open."""

    def __init__(self, stdin: Any, lines: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.stdin = stdin
        self.lines = lines

    def run(self) -> None:
        try:
            for line in self.lines:
                self.stdin.write(line)
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # killed while reading


def run_chain(
    tmp_path: Path,
    planhat: PlanhatReceiver,
    rng: random.Random,
    *,
    kills: int = 8,
    batch: int = BATCH,
    posts_per_kill: int = 5,
    ledger: dict[str, Any] | None = None,
    overlap: int = 0,
) -> Chain:
    """``kills`` killed runs, each resuming from the last bookmark, then one run to the end.

    Every kill lands while the target runs, by construction, never by timing:

    - ``post``: the receiver holds the run's k-th POST unanswered; the kill comes when it arrives
      (the POST in flight), or, half the time (k > 1), as soon as the (k-1)-th POST's answer is
      written (then the kill races the ledger commit, which is the point), the k-th still held;
    - ``input``: the target's stdin is a pipe holding a random number of the input's lines and
      left open, so the target is killed somewhere in start-up or reading, never after the end.

    ``k`` is at most ``posts_per_kill`` and at most the POSTs the run must make (what its ledger
    lacks, in batches of ``batch``), and the input is sized so every kill has posts left. Each
    run works in a fresh folder (an ephemeral worker); ``ledger`` replaces ``ledger_path`` in the
    config: ``{"ledger_url": ...}`` for PostgreSQL, ``{}`` for the default relative path (a new
    SQLite file in every folder).
    """
    hold = planhat.script
    assert isinstance(hold, JitteryPlanhat), "run_chain needs PlanhatReceiver(jittery_planhat())"
    events = (kills * (posts_per_kill + 1) + 4) * batch
    config = base_config(
        tmp_path,
        tenant_token=TOKEN,
        api_url=planhat.url,
        batch_size_rows=batch,
        checkpoint_seconds=1,
        request_timeout=120,
        max_retry_seconds=300,
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
        work = tmp_path / f"run{index}"
        work.mkdir()
        # What this run's ledger already holds is skipped; everything after it must be POSTed.
        acked = _last_acked(_read_ledger(config, work, events), events)
        unsent = events - max(first - 1, acked)
        must_post = math.ceil(unsent / batch)  # POSTs hold at most `batch` records
        if index == kills or must_post < 2:
            kill = ""
        elif rng.random() < 0.2:
            kill = "input"
        else:
            kill = "post"
        run = Run(index, first, kill)
        text = resume_input(first, events)
        (work / "input.jsonl").write_text(text)
        base = planhat.arrivals
        k = rng.randint(1, min(must_post, posts_per_kill)) if kill == "post" else 0
        hold.hold(base + k - 1 if k else None)
        feeder = None
        with (
            open(work / "input.jsonl", "rb") as input_file,
            open(work / "stdout", "wb") as stdout,
            open(work / "stderr", "wb") as stderr,
        ):
            proc = subprocess.Popen(
                [TARGET_BIN, "--config", str(config_path)],
                stdin=subprocess.PIPE if kill == "input" else input_file,
                stdout=stdout,
                stderr=stderr,
                cwd=work,
            )
            try:
                if kill == "input":
                    lines = text.encode().splitlines(keepends=True)
                    count = rng.randint(1, min(len(lines) - 1, posts_per_kill * batch))
                    feeder = _Feeder(proc.stdin, lines[:count])
                    feeder.start()
                    feeder.join(timeout=120)
                elif kill == "post":
                    previous = base + k - 2
                    answered = k >= 2 and rng.random() < 0.5

                    def ready(previous: int = previous, answered: bool = answered) -> bool:
                        if hold.held.is_set():
                            return True
                        return answered and any(
                            r.index == previous and r.answered_at is not None
                            for r in planhat.requests()
                        )

                    assert _wait_for(ready, proc), "the target ended before its held POST"
                assert proc.poll() is None or not kill, "a run meant to be killed ended first"
                if kill:
                    run.killed_at = time.monotonic()
                    proc.send_signal(signal.SIGKILL)
                run.returncode = proc.wait(timeout=600)
            finally:
                hold.release.set()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdin:
                    proc.stdin.close()
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
                        answered += 1  # killed between the answer and the ledger commit
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
