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

    def wait_for_bookmark(self, position: int, timeout: float = 120) -> bool:
        """Wait, while stdin stays open, for a STATE covering ``position``.

        The timeout only ends a hung run; nothing here depends on how fast a STATE comes.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(s.bookmark >= position for s in self.states):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

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
        # Input stays open between the halves: the STATE for each half can only come from the
        # checkpoint timer (batch_size_rows=1000 never fills), not from the end of input.
        halves = [(1, events // 2), (events // 2 + 1, events)]
        written_while_open = []
        for first, last in halves:
            _feed(feed, first, last, every=5, pause=pause)
            written_while_open.append(feed.wait_for_bookmark(last))
        code = feed.close()
    assert code == 0, feed.stderr.decode()[-3000:]
    assert written_while_open == [True, True], [s.bookmark for s in feed.states]

    states = feed.states
    assert states[-1].bookmark == events
    for state in states:
        uncovered = set(range(1, state.bookmark + 1)) - state.acknowledged
        assert not uncovered, f"STATE n={state.bookmark} read before {sorted(uncovered)[:5]}"
    worst = max(
        next(s.at for s in states if s.bookmark >= position) - written
        for position, written in feed.inputs.items()
    )
    print(f"{len(states)} STATE lines; worst input->STATE {worst:.2f}s (a figure, not a bound)")


def test_single_stream_steady_flow_with_full_batches(tmp_path: Path) -> None:
    """Batches fill (the SDK drains one sink, writing no STATE): STATE still follows each drain."""
    with PlanhatReceiver() as planhat:
        feed = SlowFeed(
            _config(tmp_path, planhat, batch_size_rows=10, checkpoint_seconds=30), planhat, tmp_path
        )
        feed.write(schema_message("events"))
        _feed(feed, 1, 60, every=4, pause=0.05)
        # Records 51-60 fill the sixth batch; its drain covers the STATE at 60, input still open.
        reached = feed.wait_for_bookmark(60)
        before_end = len(feed.states)
        code = feed.close()
    assert code == 0
    # checkpoint_seconds=30 is far off: these came from the drains of full batches.
    assert reached, [s.bookmark for s in feed.states]
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
        # The tap is busy elsewhere (stdin open, nothing comes): checkpoint_seconds=1 passes.
        # Without the target's own timer no STATE would come before the SDK's 5-minute one.
        reached = feed.wait_for_bookmark(10, timeout=120)
        during_idle = [s.bookmark for s in feed.states]
        feed.close()
    assert reached and during_idle == [10]
    assert feed.states[0].acknowledged == set(range(1, 11))
