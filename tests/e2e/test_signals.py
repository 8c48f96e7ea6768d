"""SIGTERM / SIGINT: bounded exit, exit code 128+signum, STATE only for what Planhat answered.

The CLI runs as a subprocess; signals are sent with ``os.kill`` at moments the receiver reports
(a POST has arrived and is being held). Then the test compares the STATE lines with what the
receiver answered 2xx.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import (
    TARGET_BIN,
    base_config,
    event,
    schema_message,
    singer_lines,
    state_message,
    write_config,
)
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

BATCH = 10


class Target:
    """The CLI as a subprocess: stdin a pipe, stdout/stderr read by threads."""

    def __init__(self, config: dict, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [TARGET_BIN, "--config", str(write_config(cwd, config))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            # A hang shows where: on a timeout, wait() sends SIGABRT and every thread's stack
            # lands in stderr.
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        self.out = b""
        self.err = b""
        self._threads = [
            threading.Thread(target=self._drain, args=("out",), daemon=True),
            threading.Thread(target=self._drain, args=("err",), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, which: str) -> None:
        stream = self.proc.stdout if which == "out" else self.proc.stderr
        assert stream is not None
        for line in stream:  # line by line, so a test can wait for a STATE while it runs
            setattr(self, which, getattr(self, which) + line)

    def send(self, text: str, close: bool = False) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()
        if close:
            self.proc.stdin.close()

    def signal(self, signum: int = signal.SIGTERM) -> float:
        sent = time.monotonic()
        self.proc.send_signal(signum)
        return sent

    def wait(self, timeout: float = 120) -> tuple[int, float]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait()
            for thread in self._threads:
                thread.join(5)
            stacks = self.err.decode(errors="replace")[-6000:]
            raise AssertionError(f"no exit within {timeout} s; stderr ends:\n{stacks}") from None
        ended = time.monotonic()
        for thread in self._threads:
            thread.join(5)
        return code, ended

    @property
    def bookmarks(self) -> list[int]:
        lines = self.out.decode().splitlines()
        return [json.loads(line)["bookmarks"]["events"]["n"] for line in lines if line.strip()]

    @property
    def report(self) -> dict | None:
        found = None
        for line in self.err.decode(errors="replace").splitlines():
            if line.startswith('{"type":"planhat_delivery_report"'):
                found = json.loads(line)
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _wait_until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _config(tmp_path: Path, planhat: PlanhatReceiver, **overrides: object) -> dict:
    settings = {"batch_size_rows": BATCH, "checkpoint_seconds": 30, **overrides}
    return base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **settings)


def _acknowledged(planhat: PlanhatReceiver) -> set[int]:
    return {a["info"]["n"] for a in planhat.acknowledged_activities()}


def _answered(planhat: PlanhatReceiver) -> set[int]:
    """Events of POSTs whose 2xx answer was fully written (the client could read it)."""
    return {
        a["info"]["n"]
        for r in planhat.requests()
        if r.kept and r.answered_at is not None
        for a in r.activities
    }


def _records(first: int, last: int) -> str:
    lines = []
    for n in range(first, last + 1):
        lines.append(json.dumps({"type": "RECORD", "stream": "events", "record": event(n)}))
        if n % 5 == 0:
            lines.append(json.dumps(state_message("events", n)))
    return "\n".join(lines) + "\n"


def _slow_third_post(delay: float):
    """The first two POSTs are answered at once, the third after ``delay`` seconds.

    A long delay is cut short when the receiver closes, so "held" costs nothing at teardown.
    """
    return lambda index, body: Reply(delay=delay) if index == 2 else Reply()


def _third_still_held(planhat: PlanhatReceiver) -> bool:
    """The third POST has not been answered yet (the receiver records it when it answers)."""
    return not any(r.index == 2 for r in planhat.requests())


# --- a signal during a POST ----------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_during_slow_post_exits_within_request_timeout(tmp_path: Path) -> None:
    with PlanhatReceiver(_slow_third_post(600)) as planhat:
        target = Target(_config(tmp_path, planhat, request_timeout=2), tmp_path)
        try:
            target.send(json.dumps(schema_message("events")) + "\n" + _records(1, 50))
            _wait_until(lambda: planhat.arrivals >= 3)
            target.signal()
            code, _ = target.wait(timeout=120)
            # It stopped at request_timeout, while Planhat still held the answer.
            assert _third_still_held(planhat)
        finally:
            target.kill()
    assert code == 128 + signal.SIGTERM
    bookmarks = target.bookmarks
    assert bookmarks and bookmarks[-1] == 2 * BATCH  # exactly what was acknowledged
    assert set(range(1, 2 * BATCH + 1)) <= _answered(planhat)
    report = target.report
    assert report is not None and report["status"] == "stopped"
    assert report["unconfirmed_requests"] == 1  # the third POST: kept by Planhat, no answer
    assert len(planhat.requests()) == 3  # no retry after the signal
    assert b"Stopped by signal 15" in target.err


@pytest.mark.slow
def test_sigterm_during_post_lets_it_finish_then_stops(tmp_path: Path) -> None:
    with PlanhatReceiver(_slow_third_post(1.0)) as planhat:
        target = Target(_config(tmp_path, planhat, request_timeout=5), tmp_path)
        try:
            target.send(json.dumps(schema_message("events")) + "\n" + _records(1, 50))
            _wait_until(lambda: planhat.arrivals >= 3)
            target.signal()
            code, _ = target.wait()
        finally:
            target.kill()
    assert code == 143
    # The in-flight POST (records 21-30) was answered and recorded, nothing later sent. While it
    # was in flight the target read on (the STATE after 30, then 31-40 into the next batch, which
    # waits for the one in flight): every record up to 30 is acknowledged, so STATE 30 is written.
    assert target.bookmarks[-1] == 30
    assert len(planhat.requests()) == 3
    assert target.report["sent"] == 3 * BATCH
    assert target.report["unconfirmed_requests"] == 0


@pytest.mark.slow
def test_second_signal_abandons_the_post(tmp_path: Path) -> None:
    with PlanhatReceiver(_slow_third_post(600)) as planhat:
        target = Target(_config(tmp_path, planhat, request_timeout=300), tmp_path)
        try:
            target.send(json.dumps(schema_message("events")) + "\n" + _records(1, 50))
            _wait_until(lambda: planhat.arrivals >= 3)
            target.signal()
            time.sleep(0.5)
            assert target.proc.poll() is None  # the first one waits for the POST
            target.signal()
            # Ended long before request_timeout (300 s) or the answer (600 s): abandoned.
            code, _ = target.wait(timeout=120)
            assert _third_still_held(planhat)
        finally:
            target.kill()
    assert code == 143
    assert target.bookmarks[-1] == 2 * BATCH  # not the abandoned POST's records
    assert target.report["status"] == "stopped"
    assert target.report["unconfirmed_requests"] == 1  # abandoned: Planhat may have it
    assert b"Traceback" not in target.err, target.err.decode(errors="replace")[-4000:]


@pytest.mark.slow
def test_sigint_during_slow_post(tmp_path: Path) -> None:
    with PlanhatReceiver(_slow_third_post(600)) as planhat:
        target = Target(_config(tmp_path, planhat, request_timeout=1), tmp_path)
        try:
            target.send(json.dumps(schema_message("events")) + "\n" + _records(1, 50))
            _wait_until(lambda: planhat.arrivals >= 3)
            target.signal(signal.SIGINT)
            code, _ = target.wait(timeout=120)
            assert _third_still_held(planhat)
        finally:
            target.kill()
    assert code == 128 + signal.SIGINT
    assert target.bookmarks[-1] == 2 * BATCH


# --- a signal while idle -------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_while_idle_exits_at_once_with_acknowledged_state(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        target = Target(_config(tmp_path, planhat, checkpoint_seconds=1), tmp_path)
        try:
            target.send(json.dumps(schema_message("events")) + "\n" + _records(1, 25))
            # 20 go out as two full batches; 21-25 wait for checkpoint_seconds, then go too.
            _wait_until(lambda: len(_acknowledged(planhat)) == 25)
            _wait_until(lambda: 25 in target.bookmarks)  # the STATE for 25 follows the drain
            target.signal()
            code, _ = target.wait()
        finally:
            target.kill()
    assert code == 143
    assert target.bookmarks[-1] == 25
    assert target.report["status"] == "stopped"


@pytest.mark.slow
def test_sigterm_while_idle_with_a_held_batch_stops_without_sending(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        target = Target(_config(tmp_path, planhat, checkpoint_seconds=60), tmp_path)
        try:
            target.send(json.dumps(schema_message("events")) + "\n" + _records(1, 25))
            _wait_until(lambda: len(_acknowledged(planhat)) == 20)
            _wait_until(lambda: 20 in target.bookmarks)
            target.signal()
            # Stops at once: without sending 21-25 (checkpoint_seconds=60 is far off).
            code, _ = target.wait()
        finally:
            target.kill()
    assert code == 143
    # 21-25 were held (not acknowledged): stopping at once means no STATE for them.
    assert target.bookmarks[-1] == 20
    assert len(planhat.requests()) == 2


@pytest.mark.slow
def test_sigterm_storm_never_loses_an_acknowledgement(tmp_path: Path) -> None:
    """SIGTERM at random moments of fast delivery: every 2xx answer ends up in the ledger."""
    import random

    from target_planhat.ledger import Ledger

    rng = random.Random(11)
    for attempt in range(8):
        work = tmp_path / f"a{attempt}"
        work.mkdir()
        with PlanhatReceiver(lambda i, b: Reply(delay=0.002)) as planhat:
            config = _config(work, planhat, batch_size_rows=5)
            target = Target(config, work)
            try:
                target.send(
                    singer_lines([event(n) for n in range(1, 301)], state_every=5), close=True
                )
                _wait_until(lambda: planhat.arrivals >= 3)
                time.sleep(rng.uniform(0, 0.2))
                target.signal()
                code, _ = target.wait()
            finally:
                target.kill()
        if code == 0:
            continue  # finished before the signal
        assert code == 143
        store = Ledger(config["ledger_path"], ttl_days=10**6, tenant_token=config["tenant_token"])
        ledger = store.known([f"ins-{n:06d}" for n in range(1, 301)])
        store.close()
        answered = {f"ins-{n:06d}" for n in _acknowledged(planhat)}
        assert answered == ledger, attempt
        assert not target.bookmarks or set(range(1, target.bookmarks[-1] + 1)) <= _acknowledged(
            planhat
        )


# --- a kill: the dead-letter lines a STATE covers ------------------------------------------------


@pytest.mark.slow
def test_a_kill_after_a_state_leaves_the_dead_letter_lines_it_covers(tmp_path: Path) -> None:
    # Ten events fill a batch (sent, acknowledged), four anonymous ones follow (dead-lettered:
    # no user id; no batch, so nothing else settles their lines), then a STATE after them. It is
    # written once their lines are durable: SIGKILL as soon as it is on stdout, stdin still
    # open (no end of input settles them either), and the four lines are in the file.
    lines = [json.dumps(schema_message("events"))]
    for n in range(1, 15):
        record = event(n, user="user-1" if n <= BATCH else None)
        lines.append(json.dumps({"type": "RECORD", "stream": "events", "record": record}))
    lines.append(json.dumps(state_message("events", 14)))
    with PlanhatReceiver() as planhat:
        target = Target(_config(tmp_path, planhat), tmp_path)
        try:
            target.send("\n".join(lines) + "\n")
            _wait_until(lambda: target.bookmarks == [14])
            target.proc.kill()
            target.wait()
        finally:
            target.kill()
        assert _acknowledged(planhat) == set(range(1, BATCH + 1))
    path = tmp_path / "rejected.jsonl"
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["record"]["event_properties"]["n"] for line in written] == [11, 12, 13, 14]
