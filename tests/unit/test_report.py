"""DeliveryReport: missing mapped fields counted per field, and the hints it logs at the end."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat import report as report_module
from target_planhat.mapping import ActivityMapper
from target_planhat.report import MIN_ACTIVITIES_FOR_MISSING_WARNING, DeliveryReport
from tests.support.examples import examples

FIELDS = ActivityMapper().mapped_fields


def _report(activities: list[dict]) -> DeliveryReport:
    report = DeliveryReport()
    report.set_mapped_fields(FIELDS)
    for activity in activities:
        report.count_missing(activity)
    return report


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_default_mapping_fields_and_paths() -> None:
    assert FIELDS == {
        "externalId": "$.user_id",
        "companyExternalId": "$.groups.company",
        "action": "$.event_type",
        "date": "$.event_time",
        "info": "$.event_properties, $.user_properties, $.group_properties",
    }


def test_missing_fields_are_counted_per_field() -> None:
    full = {
        "externalId": "u",
        "companyExternalId": "c",
        "action": "a",
        "date": "d",
        "info": {"x": 1},
    }
    no_company = {k: v for k, v in full.items() if k != "companyExternalId"}
    report = _report([full, no_company, {**no_company, "info": {}}])
    assert report.as_dict("succeeded")["missing_fields"] == {"companyExternalId": 2, "info": 1}
    assert report.activities == 3


def test_a_field_absent_from_every_activity_of_a_large_run_is_named(caplog) -> None:
    activity = {"externalId": "u", "action": "a", "date": "d", "info": {}}
    report = _report([activity] * MIN_ACTIVITIES_FOR_MISSING_WARNING)
    with caplog.at_level(logging.WARNING):
        report.warn_missing_fields()
    found = _warnings(caplog)
    assert len(found) == 2
    assert found[0].startswith(
        "mapping.companyExternalId ($.groups.company) was missing in all 20 activities"
    )
    assert found[1].startswith("mapping.info ($.event_properties, ") and "was empty" in found[1]


def test_no_warning_below_20_activities_or_when_one_had_it(caplog) -> None:
    without = {"externalId": "u", "action": "a", "date": "d", "info": {"x": 1}}
    small = _report([without] * (MIN_ACTIVITIES_FOR_MISSING_WARNING - 1))
    one_had_it = _report([without] * 30 + [{**without, "companyExternalId": "c"}])
    with caplog.at_level(logging.WARNING):
        small.warn_missing_fields()
        one_had_it.warn_missing_fields()
    assert _warnings(caplog) == []
    assert one_had_it.missing_fields == {"companyExternalId": 30}


@pytest.mark.parametrize(
    ("sent", "skipped", "hinted"), [(0, 32, True), (10, 11, True), (10, 10, False), (5, 0, False)]
)
def test_mostly_duplicates_says_how_to_resend(caplog, sent, skipped, hinted) -> None:
    report = DeliveryReport()
    report.sent, report.duplicates_skipped = sent, skipped
    with caplog.at_level(logging.WARNING):
        report.hint_if_mostly_duplicates("/data/ledger.sqlite")
    found = _warnings(caplog)
    assert bool(found) == hinted
    if hinted:
        assert found[0].startswith(
            f"{skipped} of {sent + skipped} activities were skipped as already delivered: "
            "the ledger at /data/ledger.sqlite holds their ids"
        )
        assert "target-planhat --config FILE --forget-delivered" in found[0]
        assert "Planhat then keeps both copies" in found[0]


def _count_one_by_one(tracked: Counter[str], actions: list[str], cap: int) -> None:
    """The plain version: each action admitted as it comes, while fewer than ``cap`` are tracked."""
    for action in actions:
        if action in tracked or len(tracked) < cap:
            tracked[action] += 1


@settings(max_examples=examples(300), deadline=None)
@given(
    chunks=st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), max_size=6),
    cap=st.integers(1, 6),
)
def test_actions_counted_per_chunk_as_if_one_by_one(chunks: list[list[str]], cap: int) -> None:
    report = DeliveryReport()
    plain: Counter[str] = Counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "_MAX_ACTIONS_TRACKED", cap)
        for chunk in chunks:
            report.count_actions(iter(chunk))
            _count_one_by_one(plain, chunk, cap)
            assert report.actions == plain and list(report.actions) == list(plain)
