"""The CLI against a fault-injecting Planhat on 127.0.0.1: what was kept, counted by event id.

Every test runs the real ``target-planhat`` as a subprocess on 60 events (6 POSTs of 10) with one
scripted fault, then compares what the receiver kept, per event number (``info.n``), with the
input: exactly once, except for the events of a POST whose answer was lost (the receiver kept it,
the client never learnt it), which are kept twice.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import Result, base_config, event, run_target, singer_lines
from tests.support.receiver import TOKEN, KeepAndDrop, PlanhatReceiver, Reply, Reset

EVENTS = 60
BATCH = 10
STATE_EVERY = 5

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, script, *, decide_before_body: bool = False, **settings: object):
    with PlanhatReceiver(script, decide_before_body=decide_before_body) as planhat:
        settings = {"request_timeout": 5, "max_retry_seconds": 30, **settings}
        config = base_config(
            tmp_path, tenant_token=TOKEN, api_url=planhat.url, batch_size_rows=BATCH, **settings
        )
        started = time.monotonic()
        records = [event(n) for n in range(1, EVENTS + 1)]
        result = run_target(config, singer_lines(records, state_every=STATE_EVERY), tmp_path)
        elapsed = time.monotonic() - started
    assert TOKEN not in result.stdout + result.stderr
    return planhat, result, elapsed


def _at(faults: dict[int, object]):
    """Request i gets ``faults[i]``; every other one a 200."""

    def script(index: int, body: bytes) -> object:
        return faults.get(index, Reply())

    return script


def _expected(planhat: PlanhatReceiver, lost_answer: set[int]) -> Counter:
    """Once per event, plus once more for each kept POST whose answer was lost."""
    expected = Counter(range(1, EVENTS + 1))
    for request in planhat.requests():
        if request.index in lost_answer:
            expected.update(a["info"]["n"] for a in request.activities)
    return expected


def _retry_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "; retry " in line]


def _assert_succeeded(result: Result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.states[-1] == {"bookmarks": {"events": {"n": EVENTS}}}
    report = result.report
    assert report is not None and report["status"] == "succeeded"
    assert report["sent"] == EVENTS


def test_429_with_retry_after_seconds(tmp_path: Path) -> None:
    planhat, result, _ = _run(tmp_path, _at({1: Reply(429, {"Retry-After": "1"}, b"rate")}))
    _assert_succeeded(result)
    assert planhat.kept_counts() == _expected(planhat, set())
    reqs = planhat.requests()
    assert reqs[2].arrived - reqs[1].at >= 1.0  # the wait honoured Retry-After
    (line,) = _retry_lines(result)
    assert "HTTP 429" in line and "rate" in line and "retry 1 in 1.0s" in line
    assert result.report["retries"] == 1 and result.report["unconfirmed_requests"] == 0


def test_429_with_retry_after_http_date(tmp_path: Path) -> None:
    def script(index: int, body: bytes) -> Reply:
        if index == 1:
            return Reply(429, {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)})
        return Reply()

    planhat, result, _ = _run(tmp_path, script)
    _assert_succeeded(result)
    assert planhat.kept_counts() == _expected(planhat, set())
    reqs = planhat.requests()
    assert reqs[2].arrived - reqs[1].at >= 0.9  # whole seconds: 1 to 2 s
    (line,) = _retry_lines(result)
    wait = float(re.search(r"retry 1 in ([0-9.]+)s", line).group(1))
    assert 0.9 <= wait <= 2.1


def test_429_without_retry_after(tmp_path: Path) -> None:
    planhat, result, _ = _run(tmp_path, _at({0: Reply(429), 3: Reply(429)}))
    _assert_succeeded(result)
    assert planhat.kept_counts() == _expected(planhat, set())
    lines = _retry_lines(result)
    assert len(lines) == 2 and all("HTTP 429" in line for line in lines)
    waits = [float(re.search(r"in ([0-9.]+)s", line).group(1)) for line in lines]
    assert all(0 <= w <= 1.0 for w in waits)  # the first retry of a POST: full jitter over 1 s


def test_burst_of_503(tmp_path: Path) -> None:
    burst = {i: Reply(503, {"Retry-After": "0"}, b"unavailable") for i in range(2, 8)}
    planhat, result, _ = _run(tmp_path, _at(burst))
    _assert_succeeded(result)
    assert planhat.kept_counts() == _expected(planhat, set())
    assert len(_retry_lines(result)) == 6
    assert result.report["retries"] == 6 and result.report["requests"] == 12


def test_connection_reset_mid_request(tmp_path: Path) -> None:
    planhat, result, _ = _run(tmp_path, _at({2: Reset(after_bytes=100)}), decide_before_body=True)
    _assert_succeeded(result)
    assert planhat.requests()[2].action == "reset"
    assert planhat.kept_counts() == _expected(planhat, set())
    (line,) = _retry_lines(result)
    assert "connection error" in line
    assert result.report["unconfirmed_requests"] == 1  # the client cannot know it was not kept


def test_answer_slower_than_request_timeout(tmp_path: Path) -> None:
    planhat, result, _ = _run(tmp_path, _at({2: Reply(delay=1.6)}), request_timeout=1)
    _assert_succeeded(result)
    counts = planhat.kept_counts()
    assert counts == _expected(planhat, {2})
    assert sum(counts.values()) == EVENTS + BATCH  # the one allowed duplicate: that POST
    (line,) = _retry_lines(result)
    assert "answer within request_timeout=1s" in line
    assert result.report["unconfirmed_requests"] == 1


def test_kept_but_connection_dropped_before_the_answer(tmp_path: Path) -> None:
    planhat, result, _ = _run(tmp_path, _at({3: KeepAndDrop()}))
    _assert_succeeded(result)
    assert planhat.requests()[3].action == "kept_and_dropped"
    assert planhat.kept_counts() == _expected(planhat, {3})
    assert result.report["unconfirmed_requests"] == 1


def test_slow_drip_answer_does_not_hold_the_run(tmp_path: Path) -> None:
    drip = Reply(body=b'{"processed": true}' + b" " * 100, drip=0.1)
    planhat, result, _ = _run(tmp_path, _at({1: drip}), request_timeout=1)
    _assert_succeeded(result)
    # The drip (~12 s) never finished: the target stopped reading at request_timeout and retried.
    assert planhat.requests()[1].answered_at is None
    assert planhat.kept_counts() == _expected(planhat, {1})


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_other_4xx_fail_fast(tmp_path: Path, status: int) -> None:
    body = b'{"message": "invalid tenant ' + TOKEN.encode() + b'"}'
    planhat, result, _ = _run(tmp_path, _at({2: Reply(status, body=body)}))
    assert result.returncode == 1
    assert len(planhat.requests()) == 3  # no retry, so no backoff wait either
    assert result.report["retries"] == 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert any(f"HTTP {status}" in line and "invalid tenant ***" in line for line in errors)
    # STATE only for what was acknowledged: the first two POSTs, records 1-20.
    assert result.states, "the acknowledged part still gets its STATE"
    assert result.states[-1]["bookmarks"]["events"]["n"] <= 2 * BATCH
    assert result.report["status"] == "failed"


def test_max_retry_seconds_exhausted(tmp_path: Path) -> None:
    def script(index: int, body: bytes) -> Reply:
        return Reply() if index < 2 else Reply(503, {"Retry-After": "1"}, b"down")

    planhat, result, elapsed = _run(tmp_path, script, max_retry_seconds=2)
    assert result.returncode == 1
    assert elapsed >= 2  # the budget was used (a busy machine only makes this longer)
    # Retry-After: 1 within a 2 s budget: at most 3 tries of the failing POST, never more.
    assert 3 <= len(planhat.requests()) <= 2 + 3
    message = [line for line in result.stderr.splitlines() if "max_retry_seconds)" in line]
    assert message and "HTTP 503" in message[0] and "after retrying for 2s" in message[0]
    # No STATE past the failure: the failing POST held records 21-30.
    bookmarks = [s["bookmarks"]["events"]["n"] for s in result.states]
    assert bookmarks and max(bookmarks) <= 2 * BATCH
    kept = set(planhat.kept_counts())
    assert set(range(1, max(bookmarks) + 1)) <= kept
    assert result.report["status"] == "failed"
