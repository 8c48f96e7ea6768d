"""STATE timing: checkpoints while input still flows, and never ahead of Planhat's answers.

The CLI runs as a subprocess; the test writes its stdin slowly (a few records, a STATE, a pause)
and a thread reads its stdout. At the moment each STATE line is read, the test looks at what the
receiver has answered 2xx so far (a request is recorded before the first byte of its answer is
written, so the snapshot can only be late, never early) and checks that the bookmark covers
nothing else.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import (
    TARGET_BIN,
    base_config,
    event,
    run_target,
    schema_message,
    singer_lines,
    state_message,
    write_config,
)
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

pytestmark = pytest.mark.slow


@dataclass
class StateLine:
    at: float
    bookmark: int
    acknowledged: set[int]  # event numbers the receiver had answered 2xx when it was read


class SlowFeed:
    """The CLI with a pipe for stdin and a thread reading STATE lines off stdout."""

    def __init__(self, config_path: Path, planhat: PlanhatReceiver, cwd: Path) -> None:
        self.planhat = planhat
        self.states: list[StateLine] = []
        self.inputs: dict[int, float] = {}  # STATE position -> when it was written
        self.proc = subprocess.Popen(
            [TARGET_BIN, "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = b""
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            acknowledged = {a["info"]["n"] for a in self.planhat.acknowledged_activities()}
            bookmark = json.loads(line)["bookmarks"]["events"]["n"]
            self.states.append(StateLine(now, bookmark, acknowledged))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def write(self, message: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()
        if message["type"] == "STATE":
            self.inputs[message["value"]["bookmarks"]["events"]["n"]] = time.monotonic()

    def close(self, timeout: float = 30) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(5)
        self._err.join(5)
        return code


def _config(tmp_path: Path, planhat: PlanhatReceiver, **overrides: object) -> Path:
    settings = {"batch_size_rows": 1000, "checkpoint_seconds": 1, **overrides}
    config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **settings)
    return write_config(tmp_path, config)


def _feed(feed: SlowFeed, first: int, last: int, every: int, pause: float) -> None:
    for n in range(first, last + 1):
        feed.write({"type": "RECORD", "stream": "events", "record": event(n)})
        if n % every == 0:
            feed.write(state_message("events", n))
            time.sleep(pause)


def test_state_while_input_flows_and_never_ahead_of_answers(tmp_path: Path) -> None:
    checkpoint, pause, events = 0.5, 0.1, 200
    # Every answer takes 0.3 s: a STATE written before its POST was answered would show.
    with PlanhatReceiver(lambda i, b: Reply(delay=0.3)) as planhat:
        config = _config(tmp_path, planhat, checkpoint_seconds=checkpoint)
        feed = SlowFeed(config, planhat, tmp_path)
        feed.write(schema_message("events"))
        _feed(feed, 1, events, every=5, pause=pause)  # ~4 s of input
        input_done = time.monotonic()
        code = feed.close()
    assert code == 0, feed.stderr.decode()[-3000:]

    states = feed.states
    assert states[-1].bookmark == events
    during = [s for s in states if s.at < input_done]
    # 4 s of input, checkpoint_seconds=1, 0.3 s per answer: a STATE every ~1.5 s, not only at
    # the end.
    assert len(during) >= 2, [(round(s.at - input_done, 2), s.bookmark) for s in states]
    for state in states:
        uncovered = set(range(1, state.bookmark + 1)) - state.acknowledged
        assert not uncovered, f"STATE n={state.bookmark} read before {sorted(uncovered)[:5]}"
    # Every STATE that came in was covered by a written one within checkpoint_seconds, plus the
    # pause until the next message, plus the 0.3 s answer, plus slack for a loaded machine.
    worst = 0.0
    for position, written in feed.inputs.items():
        covered = next(s.at for s in states if s.bookmark >= position)
        worst = max(worst, covered - written)
    assert worst <= checkpoint + pause + 0.3 + 1.5, worst
    print(f"{len(during)} STATE lines while input flowed; worst input->STATE {worst:.2f}s")


def test_single_stream_steady_flow_with_full_batches(tmp_path: Path) -> None:
    """Batches fill (the SDK drains one sink, writing no STATE): STATE still follows each drain."""
    with PlanhatReceiver() as planhat:
        feed = SlowFeed(
            _config(tmp_path, planhat, batch_size_rows=10, checkpoint_seconds=30), planhat, tmp_path
        )
        feed.write(schema_message("events"))
        _feed(feed, 1, 60, every=4, pause=0.05)
        time.sleep(0.5)
        before_end = len(feed.states)
        code = feed.close()
    assert code == 0
    # checkpoint_seconds=30 never fires: these came from the drains of full batches.
    assert before_end >= 4
    for state in feed.states:
        assert set(range(1, state.bookmark + 1)) <= state.acknowledged


def test_fractional_checkpoint_seconds_is_accepted(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = base_config(
            tmp_path,
            tenant_token=TOKEN,
            api_url=planhat.url,
            checkpoint_seconds=0.5,
            request_timeout=2.5,
        )
        result = run_target(config, singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_state_written_while_input_is_idle(tmp_path: Path) -> None:
    """The tap goes quiet after a STATE: the held batch is sent and its STATE written anyway."""
    with PlanhatReceiver() as planhat:
        feed = SlowFeed(_config(tmp_path, planhat), planhat, tmp_path)
        feed.write(schema_message("events"))
        _feed(feed, 1, 10, every=10, pause=0)
        time.sleep(3)  # the tap is busy elsewhere: checkpoint_seconds=1 passes three times
        during_idle = [s.bookmark for s in feed.states]
        feed.close()
    assert during_idle == [10]
    assert feed.states[0].acknowledged == set(range(1, 11))
    assert feed.states[0].at - feed.inputs[10] <= 1 + 1.0  # checkpoint_seconds + slack
