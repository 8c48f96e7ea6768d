"""The Planhat client against a real HTTP receiver on 127.0.0.1: retries, waits, fail-fast, budget.

In-process (the client only), so waits and counters can be measured exactly; the CLI-level
versions of the same faults are in ``test_delivery_faults.py``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time

import pytest

from target_planhat.planhat import PlanhatClient, PlanhatError, check_api_url, parse_retry_after
from target_planhat.shutdown import ShutdownGuard, StopRequested
from tests.support.receiver import TOKEN, KeepAndDrop, PlanhatReceiver, Reply, Reset

LOGGER = "target_planhat.planhat"


def _body(first: int, count: int, pad: int = 0) -> bytes:
    rows = [
        {"externalId": "u", "action": "Login", "info": {"n": n, "pad": "x" * pad}}
        for n in range(first, first + count)
    ]
    return json.dumps(rows).encode()


def _client(planhat: PlanhatReceiver, **kwargs: object) -> PlanhatClient:
    kwargs.setdefault("request_timeout", 5)
    kwargs.setdefault("max_retry_seconds", 30)
    return PlanhatClient(planhat.url, TOKEN, **kwargs)  # type: ignore[arg-type]


def _scripted(*actions: object):
    """Answer request i with ``actions[i]``; 200 after the script runs out."""

    def script(index: int, body: bytes) -> object:
        return actions[index] if index < len(actions) else Reply()

    return script


def _retry_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "retry" in r.msg]


def _waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    text = "\n".join(_retry_logs(caplog))
    return [float(m) for m in re.findall(r"retry \d+ in ([0-9.]+)s", text)]


def _gap(planhat: PlanhatReceiver, i: int) -> float:
    """Seconds between the answer to request i and the arrival of request i + 1."""
    reqs = planhat.requests()
    return reqs[i + 1].arrived - (reqs[i].answered_at or reqs[i].at)


@pytest.fixture(autouse=True)
def _no_token_in_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    yield
    assert TOKEN not in caplog.text


# --- Retry-After ---------------------------------------------------------------------------------


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("-4", now) == 0.0
    future = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after(future, now) == pytest.approx(12, abs=1)
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after(None, now) is None


def test_429_retry_after_seconds_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    with PlanhatReceiver(_scripted(Reply(429, {"Retry-After": "1"}, b"slow down"))) as planhat:
        client = _client(planhat)
        client.send(_body(1, 5), 5)
    assert [r.action for r in planhat.requests()] == ["status 429", "status 200"]
    # The stand-in stamps its answer after writing it, so the client may have read it (and
    # started its wait) a moment before: a little slack below; above, no bound (a slow machine
    # is no bug). The wait the client chose is exact in its log line below.
    assert _gap(planhat, 0) >= 0.95
    assert sorted(planhat.kept_counts().items()) == [(n, 1) for n in range(1, 6)]
    assert (client.stats.requests, client.stats.retries, client.stats.unconfirmed_requests) == (
        2,
        1,
        0,
    )
    (line,) = _retry_logs(caplog)
    assert "HTTP 429" in line and "slow down" in line and "retry 1 in 1.0s" in line


def test_429_retry_after_http_date_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    def script(index: int, body: bytes) -> Reply:
        if index == 0:  # HTTP-dates have whole seconds: 2 s ahead is a wait of 1 to 2 s
            return Reply(429, {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)})
        return Reply()

    with PlanhatReceiver(script) as planhat:
        client = _client(planhat)
        client.send(_body(1, 3), 3)
    assert _gap(planhat, 0) >= 0.9  # slack as above; the wait chosen is checked from the log
    (wait,) = _waits(caplog)
    assert 0.9 <= wait <= 2.1
    assert sorted(planhat.kept_counts().values()) == [1, 1, 1]


def test_429_without_retry_after_backs_off_with_jitter(caplog: pytest.LogCaptureFixture) -> None:
    with PlanhatReceiver(_scripted(Reply(429), Reply(429))) as planhat:
        client = _client(planhat)
        client.send(_body(1, 2), 2)
    first, second = _waits(caplog)
    assert 0 <= first <= 1.0  # full jitter over 1 s, then over 2 s
    assert 0 <= second <= 2.0
    assert len(planhat.requests()) == 3
    assert sorted(planhat.kept_counts().values()) == [1, 1]


def test_burst_of_503_then_success(caplog: pytest.LogCaptureFixture) -> None:
    burst = [Reply(503, {"Retry-After": "0"}, b"<html>busy</html>")] * 5
    with PlanhatReceiver(_scripted(*burst)) as planhat:
        client = _client(planhat)
        client.send(_body(1, 10), 10)
    assert [r.action for r in planhat.requests()] == ["status 503"] * 5 + ["status 200"]
    assert sorted(planhat.kept_counts().items()) == [(n, 1) for n in range(1, 11)]
    assert client.stats.retries == 5 and client.stats.unconfirmed_requests == 0
    logs = _retry_logs(caplog)
    assert len(logs) == 5 and all("HTTP 503" in m and "in 0.0s" in m for m in logs)


# --- lost connections and answers ----------------------------------------------------------------


def test_connection_reset_mid_request_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    body = _body(1, 200, pad=2000)  # ~400 kB: the reset lands while the client is still sending
    script = _scripted(Reset(after_bytes=1000))
    with PlanhatReceiver(script, decide_before_body=True) as planhat:
        client = _client(planhat)
        client.send(body, 200)
    reqs = planhat.requests()
    assert [r.action for r in reqs] == ["reset", "status 200"]
    assert len(reqs[0].body) == 1000 < len(body)
    assert sorted(planhat.kept_counts().values()) == [1] * 200
    # The client cannot tell a reset before the body from one after: counted as unconfirmed.
    assert client.stats.unconfirmed_requests == 1
    (line,) = _retry_logs(caplog)
    assert "connection error" in line


def test_answer_slower_than_request_timeout(caplog: pytest.LogCaptureFixture) -> None:
    # The first answer comes only when the receiver closes (its delay is cut short then), so the
    # retry arriving at all shows the client gave up at request_timeout, on any machine.
    with PlanhatReceiver(_scripted(Reply(delay=600))) as planhat:
        client = _client(planhat, request_timeout=1)
        client.send(_body(1, 4), 4)
    # The receiver kept the first copy (it answered 200, too late): the one allowed duplicate.
    assert sorted(planhat.kept_counts().values()) == [2, 2, 2, 2]
    assert client.stats.unconfirmed_requests == 1
    first, retry = planhat.requests()[0], planhat.requests()[1]
    assert retry.arrived < first.at  # retried while the first answer was still being held
    (line,) = _retry_logs(caplog)
    assert "answer within request_timeout=1s" in line


def test_kept_but_answer_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with PlanhatReceiver(_scripted(KeepAndDrop())) as planhat:
        client = _client(planhat)
        client.send(_body(1, 3), 3)
    assert [r.action for r in planhat.requests()] == ["kept_and_dropped", "status 200"]
    assert sorted(planhat.kept_counts().values()) == [2, 2, 2]
    assert planhat.acknowledged_activities() == json.loads(_body(1, 3))
    assert client.stats.unconfirmed_requests == 1


def test_slow_drip_answer_is_cut_at_request_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """Every byte comes within the read timeout; the whole answer would take ~10 s.

    requests' timeout bounds each wait for a byte, not the answer: without the client's own
    deadline this POST (and a SIGTERM waiting for it) would last as long as the server drips.
    """
    answer = Reply(body=b'{"processed": true, "padding": "' + b"." * 40 + b'"}', drip=0.1)
    with PlanhatReceiver(_scripted(answer)) as planhat:
        client = _client(planhat, request_timeout=1)
        client.send(_body(1, 2), 2)
    # Cut at 1 s, before the status line was complete (the first answer never finished): the
    # POST is unconfirmed, retried, and the receiver kept both copies.
    assert client.stats.unconfirmed_requests == 1
    assert [r.action for r in planhat.requests()] == ["status 200", "status 200"]
    assert planhat.requests()[0].answered_at is None
    assert sorted(planhat.kept_counts().values()) == [2, 2]
    (line,) = _retry_logs(caplog)
    assert "no complete answer within request_timeout=1s" in line


def test_slow_drip_after_the_status_line_counts_as_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = Reply(body=b'{"processed": true, "padding": "' + b"." * 200 + b'"}', drip=0.02)
    with PlanhatReceiver(_scripted(answer)) as planhat:
        client = _client(planhat, request_timeout=1)
        client.send(_body(1, 2), 2)
    # The drip (~6 s) never finished: the client stopped reading at 1 s, and did not retry.
    assert planhat.requests()[0].answered_at is None
    assert len(planhat.requests()) == 1 and client.stats.retries == 0
    assert "cut off at request_timeout=1s after its status line" in caplog.text


def test_connection_refused_is_retried_and_not_unconfirmed() -> None:
    with PlanhatReceiver() as dead:
        url = dead.url
    client = PlanhatClient(url, TOKEN, request_timeout=1, max_retry_seconds=1)
    with pytest.raises(PlanhatError, match="max_retry_seconds"):
        client.send(_body(1, 1), 1)
    assert client.stats.requests >= 2
    assert client.stats.unconfirmed_requests == 0


# --- fail fast, budget ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_fail_fast_with_status_and_excerpt(status: int) -> None:
    answer = Reply(
        status, body=b'{"error": "bad tenant ' + TOKEN.encode() + b'", "x": "' + b"y" * 1000 + b'"}'
    )
    with PlanhatReceiver(_scripted(answer)) as planhat:
        client = _client(planhat)
        with pytest.raises(PlanhatError) as info:
            client.send(_body(1, 7), 7)
    message = str(info.value)
    assert len(planhat.requests()) == 1 and client.stats.retries == 0  # no retry, no wait
    assert f"HTTP {status}" in message
    assert "bad tenant" in message and "7 activities" in message
    assert TOKEN not in message and "***" in message
    assert len(message) < 700  # an excerpt, not the 1 kB body
    if status == 413:
        assert "max_request_bytes" in message
    hinted = f"(check tenant_token: Planhat refuses a token it does not know with {status})"
    assert (hinted in message) == (status in (401, 403, 404))


def test_a_refused_bearer_token_is_named_too() -> None:
    with PlanhatReceiver(_scripted(Reply(401))) as planhat:
        client = _client(planhat, bearer="rest-token-1234", path="/dimensiondata/{tenant}")
        with pytest.raises(PlanhatError, match="check tenant_token and planhat_api_token"):
            client.send(_body(1, 1), 1)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("http://127.0.0.1:8080/analytics", "path '/analytics'"),
        ("https://analytics.planhat.com/analytics/bulk", "path '/analytics/bulk'"),
        ("https://analytics.planhat.com?region=eu", "a query or fragment"),
        ("https://user:pw@analytics.planhat.com", "user info"),
    ],
)
def test_api_url_with_a_path_is_refused(url: str, extra: str) -> None:
    with pytest.raises(ValueError) as info:
        check_api_url(url)
    message = str(info.value)
    assert message.startswith("api_url: must be the host only, like '")
    assert f"it has {extra}" in message
    assert "pw" not in message


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://analytics.planhat.com", "https://analytics.planhat.com"),
        ("https://analytics.planhat.com/", "https://analytics.planhat.com"),
        ("http://127.0.0.1:9", "http://127.0.0.1:9"),
    ],
)
def test_api_url_host_only_is_accepted(url: str, normalised: str) -> None:
    assert check_api_url(url) == normalised


def test_max_retry_seconds_exhausted(caplog: pytest.LogCaptureFixture) -> None:
    always_503 = lambda index, body: Reply(503, {"Retry-After": "1"})  # noqa: E731
    with PlanhatReceiver(always_503) as planhat:
        client = _client(planhat, max_retry_seconds=2)
        started = time.monotonic()
        with pytest.raises(PlanhatError) as info:
            client.send(_body(1, 2), 2)
        elapsed = time.monotonic() - started
    assert elapsed >= 2  # the budget was used (a busy machine only makes this longer)
    assert "max_retry_seconds" in str(info.value) and "HTTP 503" in str(info.value)
    # At 0 s, 1 s, 2 s at most (Retry-After: 1): fewer on a busy machine, never more.
    assert 2 <= len(planhat.requests()) <= 3
    assert any("giving up" in r.getMessage() for r in caplog.records)


def test_signal_between_retries_stops_the_wait() -> None:
    guard = ShutdownGuard()

    def script(index: int, body: bytes) -> Reply:
        guard.signum = 15  # a SIGTERM that arrived while this POST was in flight
        return Reply(503, {"Retry-After": "30"})

    with PlanhatReceiver(script) as planhat:
        client = _client(planhat, guard=guard)
        started = time.monotonic()
        with pytest.raises(StopRequested):
            client.send(_body(1, 1), 1)
    # Retry-After asked for 30 s: well under it means the wait was cut, on any machine.
    assert time.monotonic() - started < 15
    assert len(planhat.requests()) == 1
