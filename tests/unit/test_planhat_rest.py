"""The REST client against the Planhat REST stand-in on 127.0.0.1: paging, auth, rate limits."""

from __future__ import annotations

import logging

import pytest

from target_planhat import redact
from target_planhat.planhat_rest import (
    COMPANIES,
    ENDUSERS,
    Pacer,
    PlanhatRestAuthError,
    PlanhatRestClient,
    PlanhatRestError,
    rate_limit_wait,
)
from tests.support.planhat_rest import REST_TOKEN, Answer, PlanhatRestStandIn

LOGGER = "target_planhat.planhat_rest"


def _client(rest: PlanhatRestStandIn, token: str = REST_TOKEN, **kwargs) -> PlanhatRestClient:
    kwargs.setdefault("request_timeout", 5)
    kwargs.setdefault("max_retry_seconds", 30)
    return PlanhatRestClient(rest.url, token, **kwargs)


def _companies(n: int) -> list[str]:
    return [f"co-{i:05d}" for i in range(n)]


def _script(*answers: Answer | None):
    def script(index: int, path: str, query: dict[str, str]) -> Answer | None:
        return answers[index] if index < len(answers) else None

    return script


def test_pages_companies_until_a_short_page_asking_only_for_external_ids():
    with PlanhatRestStandIn(companies=_companies(12_000)) as rest:
        client = _client(rest)
        found = client.values(COMPANIES, 5000)
    assert found == {"externalId": set(_companies(12_000))}
    requests = rest.list_requests("/companies")
    assert [r.query["offset"] for r in requests] == ["0", "5000", "10000"]
    assert {r.query["limit"] for r in requests} == {"5000"}
    assert {r.query["select"] for r in requests} == {"externalId"}
    assert all(r.authorized for r in requests)
    assert client.stats.requests == 3


def test_a_list_that_fills_its_last_page_ends_at_the_empty_page():
    with PlanhatRestStandIn(companies=_companies(4000)) as rest:
        found = _client(rest).values(COMPANIES, 2000)
    assert len(found["externalId"]) == 4000
    assert [r.query["offset"] for r in rest.list_requests()] == ["0", "2000", "4000"]


def test_end_users_by_external_id_and_email():
    users = [{"externalId": f"u{i}", "email": f"u{i}@example.com"} for i in range(4500)]
    users.append({"externalId": None, "email": "only-mail@example.com"})
    users.append({"externalId": "only-id", "email": None})
    with PlanhatRestStandIn(endusers=users) as rest:
        found = _client(rest).values(ENDUSERS, 2000)
    assert len(found["externalId"]) == 4501 and "only-id" in found["externalId"]
    assert len(found["email"]) == 4501 and "only-mail@example.com" in found["email"]
    assert {r.query["select"] for r in rest.list_requests()} == {"externalId,email"}


def test_a_small_list_is_confirmed_by_one_more_request():
    with PlanhatRestStandIn(companies=_companies(30)) as rest:
        found = _client(rest).values(COMPANIES, 5000)
    assert len(found["externalId"]) == 30
    assert [r.query["offset"] for r in rest.list_requests()] == ["0", "30"]


def test_a_server_that_caps_its_pages_is_paged_by_its_cap(caplog):
    # Asked 5000, the server sends 1000: without the check, 11,000 companies would look unknown.
    with (
        PlanhatRestStandIn(companies=_companies(12_000), max_page=1000) as rest,
        caplog.at_level(logging.WARNING, LOGGER),
    ):
        found = _client(rest).values(COMPANIES, 5000, "planhat_companies_page_size")
    assert found["externalId"] == set(_companies(12_000))
    assert any(
        "at most 1000 companies per page" in r.getMessage()
        and "planhat_companies_page_size=5000" in r.getMessage()
        for r in caplog.records
    )


def test_429_with_retry_after_is_waited_for_then_retried(caplog):
    answers = [None, Answer(429, {"Retry-After": "1"}, b'{"error": "Too many requests"}')]
    with PlanhatRestStandIn(companies=_companies(12_000), script=_script(*answers)) as rest:
        client = _client(rest)
        with caplog.at_level(logging.WARNING, LOGGER):
            found = client.values(COMPANIES, 5000)
    assert len(found["externalId"]) == 12_000
    assert [r.status for r in rest.list_requests()] == [200, 429, 200, 200]
    assert client.stats.retries == 1
    assert client.stats.waited_seconds >= 0.9
    assert any("HTTP 429" in r.getMessage() and "in 1.0s" in r.getMessage() for r in caplog.records)


def test_429_with_rate_limit_headers_waits_for_the_reset():
    headers = {
        "X-Rate-Limit-Limit": "200",
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": "1",
    }
    with PlanhatRestStandIn(companies=_companies(10), script=_script(Answer(429, headers))) as rest:
        client = _client(rest)
        found = client.values(COMPANIES, 5000)
    assert len(found["externalId"]) == 10
    assert client.stats.retries == 1 and client.stats.waited_seconds >= 0.9


def test_a_spent_quota_holds_the_next_call_back_instead_of_running_into_429():
    with PlanhatRestStandIn(companies=_companies(12_000), quota=2, quota_seconds=1) as rest:
        client = _client(rest)
        assert len(client.values(COMPANIES, 5000)["externalId"]) == 12_000
    # The second answer said 0 calls were left: the third waited for the reset.
    assert [r.status for r in rest.list_requests()] == [200, 200, 200]
    assert client.stats.retries == 0 and client.stats.waited_seconds >= 0.5


def test_a_call_over_the_quota_gets_429_and_is_retried_after_the_reset():
    with PlanhatRestStandIn(companies=_companies(12_000), quota=1, quota_seconds=1) as rest:
        # Good answers' quota headers ignored: the 429 path is taken.
        client = _client(rest)
        client._note_quota = lambda headers: None  # type: ignore[method-assign]
        client.values(COMPANIES, 5000)
    statuses = [r.status for r in rest.list_requests()]
    assert statuses == [200, 429, 200, 429, 200]


def test_401_is_an_error_naming_the_setting_without_the_token():
    with (
        PlanhatRestStandIn(companies=_companies(3), echo_token=True) as rest,
        pytest.raises(PlanhatRestAuthError) as caught,
    ):
        _client(rest, token="wrong-token-9911").values(COMPANIES, 5000)
    message = str(caught.value)
    assert message.startswith("planhat_api_token:")
    assert "HTTP 401" in message
    assert "wrong-token-9911" not in message and redact.MASK in message  # the echo, masked


def test_403_is_an_auth_error_too():
    with (
        PlanhatRestStandIn(script=_script(Answer(403, body=b'{"error":"Forbidden"}'))) as rest,
        pytest.raises(PlanhatRestAuthError, match=r"planhat_api_token: .*HTTP 403"),
    ):
        _client(rest).values(COMPANIES, 5000)


def test_server_errors_are_retried():
    answers = [Answer(503, {"Retry-After": "0"}), Answer(500, {"Retry-After": "0"})]
    with PlanhatRestStandIn(companies=_companies(5), script=_script(*answers)) as rest:
        client = _client(rest)
        assert len(client.values(COMPANIES, 5000)["externalId"]) == 5
    assert client.stats.retries == 2


def test_a_wait_beyond_the_retry_budget_gives_up_at_once():
    answers = [Answer(429, {"Retry-After": "3600"})]
    with (
        PlanhatRestStandIn(companies=_companies(5), script=_script(*answers)) as rest,
        pytest.raises(PlanhatRestError, match=r"max_retry_seconds=5.*HTTP 429"),
    ):
        _client(rest, max_retry_seconds=5).values(COMPANIES, 5000)
    assert len(rest.list_requests()) == 1


def test_an_answer_that_is_not_a_list_is_an_error():
    answers = [Answer(200, body=b'{"data": []}')]
    with (
        PlanhatRestStandIn(script=_script(*answers)) as rest,
        pytest.raises(PlanhatRestError, match="expected a JSON array, got dict"),
    ):
        _client(rest).values(COMPANIES, 5000)


def test_plain_http_is_refused_for_other_hosts():
    with pytest.raises(ValueError, match=r"^planhat_api_url: plain http:// is refused"):
        PlanhatRestClient("http://api.planhat.com", REST_TOKEN)
    assert PlanhatRestClient("https://api-eu3.planhat.com/", REST_TOKEN).base == (
        "https://api-eu3.planhat.com"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pacer_keeps_a_minute_window_under_its_quota():
    clock = FakeClock()
    pacer = Pacer(per_minute=3, per_second=10, clock=clock)
    for _ in range(3):
        assert pacer.delay() == pytest.approx(0.0) or pacer.delay() == pytest.approx(0.1)
        clock.now += pacer.delay()
        pacer.started()
    # The fourth call waits until the first one is a minute old.
    assert pacer.delay() == pytest.approx(60.0 - 0.2)
    clock.now += pacer.delay()
    assert pacer.delay() == pytest.approx(0.0)


def test_pacer_spaces_calls_and_honours_hold_off():
    clock = FakeClock()
    pacer = Pacer(per_minute=1000, per_second=100, clock=clock)
    pacer.started()
    assert pacer.delay() == pytest.approx(0.01)
    pacer.hold_off(5)
    assert pacer.delay() == pytest.approx(5)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"X-Rate-Limit-Reset": "12"}, 12.0),
        ({"X-Rate-Limit-Reset": str(1_000_000_000 + 30)}, 30.0),  # Unix seconds
        ({"X-Rate-Limit-Reset": str((1_000_000_000 + 45) * 1000)}, 45.0),  # Unix milliseconds
        ({"X-Rate-Limit-Reset": "100000"}, 120.0),  # capped at Planhat's longest window
        ({"X-Rate-Limit-Remaining": "0"}, 60.0),
        ({"X-Rate-Limit-Remaining": "5"}, None),
        ({}, None),
    ],
)
def test_rate_limit_wait(headers, expected):
    assert rate_limit_wait(headers, now=1_000_000_000) == expected
