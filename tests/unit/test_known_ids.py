"""The matching rule, and the ids cache in the store (both backends) against the REST stand-in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from target_planhat.known_ids import (
    ACTIVITY_FIELDS,
    KnownIds,
    Unmatched,
    match,
    models_for,
    normalise,
)
from target_planhat.planhat_rest import ASSETS, COMPANIES, ENDUSERS, PROJECTS, PlanhatRestClient
from target_planhat.settings import DEFAULT_PAGE_SIZES, ConfigError
from tests.support.planhat_rest import REST_TOKEN, Answer, PlanhatRestStandIn
from tests.support.postgres import StoreBackend

KNOWN = {
    "company": {"acme"},
    "user": {"u-1"},
    "email": {"known@example.com"},
    "asset": {"ws-1"},
    "project": {"p-1"},
}


def _own(**fields: str) -> dict[str, str]:
    kinds = {field: kind for kind, field in ACTIVITY_FIELDS.items()}
    return {kinds[f]: normalise(kinds[f], v) for f, v in fields.items()}  # type: ignore[misc]


def _known(own: dict[str, str]) -> dict[str, set[str]]:
    return {kind: ids & {own[kind]} if kind in own else set() for kind, ids in KNOWN.items()}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"companyExternalId": "acme", "externalId": "u-9"}, None),  # known company
        ({"companyExternalId": "nope", "externalId": "u-1"}, None),  # known user
        ({"companyExternalId": "nope", "email": "Known@Example.com "}, None),  # email, any case
        ({"companyExternalId": "nope", "externalId": "u-9"}, Unmatched("unknown_company", "nope")),
        ({"externalId": "u-9"}, Unmatched("unknown_user", "u-9")),
        ({"email": "x@acme.com"}, Unmatched("unknown_user", "x@acme.com")),  # no domain fallback
        ({"companyExternalId": "acme", "assetExternalId": "ws-1"}, None),
        # Asset level: the asset decides, a known company does not make it match.
        (
            {"companyExternalId": "acme", "assetExternalId": "ws-9"},
            Unmatched("unknown_asset", "ws-9"),
        ),
        ({"externalId": "u-9", "projectExternalId": "p-1"}, None),
        (
            {"assetExternalId": "ws-1", "projectExternalId": "p-9"},
            Unmatched("unknown_project", "p-9"),
        ),
    ],
)
def test_the_rule(fields, expected):
    own = _own(**fields)
    assert match(own, _known(own)) == expected


def test_assets_and_projects_are_listed_only_when_mapped():
    assert models_for({"externalId", "companyExternalId"}) == (COMPANIES, ENDUSERS)
    assert models_for({"assetExternalId", "projectExternalId"}) == (
        COMPANIES,
        ENDUSERS,
        ASSETS,
        PROJECTS,
    )


def _stand_in(**kwargs) -> PlanhatRestStandIn:
    kwargs.setdefault("companies", [f"co-{i}" for i in range(12_000)])
    kwargs.setdefault(
        "endusers", [{"externalId": f"u-{i}", "email": f"U-{i}@Example.com"} for i in range(3000)]
    )
    return PlanhatRestStandIn(**kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _known_ids(rest, store=None, clock=None, ttl=60.0, token=REST_TOKEN, models=None):
    client = PlanhatRestClient(rest.url, token, request_timeout=5, max_retry_seconds=3)
    return KnownIds(
        client,
        models or (COMPANIES, ENDUSERS),
        DEFAULT_PAGE_SIZES,
        ttl,
        store=store,
        clock=clock or Clock(),
    )


def _activities() -> list[dict[str, str]]:
    return [
        {"companyExternalId": "co-11999", "externalId": "new-user"},
        {"companyExternalId": "co-new", "externalId": "u-2999"},
        {"companyExternalId": "co-new", "email": "u-5@example.COM"},
        {"companyExternalId": "co-new", "externalId": "new-user"},
        {"externalId": "new-user"},
    ]


def test_in_memory_ids_for_a_dry_run():
    with _stand_in() as rest:
        known = _known_ids(rest)
        assert known.refresh_if_due() is True
        verdicts = known.check(_activities())
    assert verdicts == [
        None,
        None,
        None,
        Unmatched("unknown_company", "co-new"),
        Unmatched("unknown_user", "new-user"),
    ]


def test_ids_cached_in_the_store_until_their_ttl(store_backend: StoreBackend, tmp_path: Path):
    store = store_backend.open(tmp_path)
    clock = Clock()
    try:
        with _stand_in() as rest:
            assert _known_ids(rest, store, clock).refresh_if_due() is True
            loaded = len(rest.list_requests())
            # Another run within the TTL: no request, the same answers from the store.
            later = _known_ids(rest, store, clock)
            clock.now += 59 * 60
            assert later.refresh_if_due() is False
            assert len(rest.list_requests()) == loaded
            assert [v is None for v in later.check(_activities())] == [True] * 3 + [False] * 2
            # Past the TTL: listed again, and what Planhat no longer has is gone.
            rest.lists["companies"] = [
                c for c in rest.lists["companies"] if c["externalId"] != "co-11999"
            ]
            rest.add_company("co-new")
            clock.now += 2 * 60
            assert later.refresh_if_due() is True
            assert len(rest.list_requests()) > loaded
            assert later.known("company", ["co-11999", "co-new", "co-0"]) == {"co-new", "co-0"}
            assert later.age() == 0
    finally:
        store.close()


def test_ids_are_scoped_by_tenant(store_backend: StoreBackend, tmp_path: Path):
    mine = store_backend.open(tmp_path, tenant_token="tenant-token-1")
    other = store_backend.open(tmp_path, tenant_token="tenant-token-2")
    try:
        with _stand_in() as rest:
            _known_ids(rest, mine).refresh_if_due()
            theirs = _known_ids(rest, other)
            assert theirs.age() is None
            assert theirs.known("company", ["co-1"]) == set()
    finally:
        mine.close()
        other.close()


def test_before_holding_a_cache_older_than_a_minute_is_refreshed_once(
    store_backend: StoreBackend, tmp_path: Path
):
    store = store_backend.open(tmp_path)
    clock = Clock()
    try:
        with _stand_in() as rest:
            known = _known_ids(rest, store, clock)
            known.refresh_if_due()
            clock.now += 30
            assert known.refresh_before_holding() is False  # 30 s old: fresh enough
            fresh = _known_ids(rest, store, clock)
            clock.now += 31
            assert fresh.refresh_before_holding() is True
            clock.now += 120
            assert fresh.refresh_before_holding() is False  # once a run
    finally:
        store.close()


def test_401_is_a_config_error_naming_the_token():
    with _stand_in(echo_token=True) as rest:
        known = _known_ids(rest, token="wrong-token-5521")
        with pytest.raises(ConfigError, match=r"^planhat_api_token: .*HTTP 401") as caught:
            known.refresh_if_due()
    assert "wrong-token-5521" not in str(caught.value)


def test_a_failing_api_falls_back_to_ids_loaded_before(
    store_backend: StoreBackend, tmp_path: Path, caplog
):
    store = store_backend.open(tmp_path)
    clock = Clock()
    try:
        with _stand_in() as rest:
            _known_ids(rest, store, clock).refresh_if_due()
            rest.script = lambda i, p, q: Answer(503, {"Retry-After": "5"})
            clock.now += 2 * 3600
            with caplog.at_level(logging.WARNING, "target_planhat.known_ids"):
                assert _known_ids(rest, store, clock).refresh_if_due() is False
            assert any(
                "using those loaded 120 minutes ago" in r.getMessage() for r in caplog.records
            )
            # Never loaded: nothing to fall back on, the run stops.
            other = store_backend.open(tmp_path, tenant_token="tenant-token-3")
            try:
                with pytest.raises(Exception, match="HTTP 503"):
                    _known_ids(rest, other, clock).refresh_if_due()
            finally:
                other.close()
    finally:
        store.close()
