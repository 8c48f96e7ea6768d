"""to_iso_utc: every timestamp form the Amplitude taps emit -> ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.dates import to_iso_utc
from tests.support.dates_reference import outcome, reference_to_iso_utc, time_values
from tests.support.examples import examples

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Raw Export API (UTC, space, no zone), 6 fractional digits.
        ("2020-02-15 01:00:00.123456", "2020-02-15T01:00:00.123Z"),
        ("2020-02-15 01:00:00", "2020-02-15T01:00:00Z"),
        # singer-python strftime (tap-amplitude-api, tap-amplitude Snowflake).
        ("2024-01-01T10:00:00.123000Z", "2024-01-01T10:00:00.123Z"),
        ("2024-01-01T10:00:00.000000Z", "2024-01-01T10:00:00Z"),
        # Airbyte's isoformat() of an aware UTC datetime.
        ("2024-01-01T10:00:00.123456+00:00", "2024-01-01T10:00:00.123Z"),
        ("2024-01-01T10:00:00+00:00", "2024-01-01T10:00:00Z"),
        # Other zones are converted, not dropped.
        ("2024-01-01T12:00:00.5+02:00", "2024-01-01T10:00:00.500Z"),
        ("2024-01-01T05:30:00-04:30", "2024-01-01T10:00:00Z"),
        # Odd fraction lengths, lower-case z, surrounding blanks.
        ("2024-01-01T10:00:00.1z", "2024-01-01T10:00:00.100Z"),
        ("2024-01-01T10:00:00.123456789Z", "2024-01-01T10:00:00.123Z"),
        ("  2024-01-01T10:00:00Z ", "2024-01-01T10:00:00Z"),
        # Already canonical: returned as is.
        ("2024-01-01T10:00:00.123Z", "2024-01-01T10:00:00.123Z"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        # Canonical shape but a ".000" fraction: normalised like a datetime with 0 us would be.
        ("2024-01-01T10:00:00.000Z", "2024-01-01T10:00:00Z"),
        # Date only.
        ("2024-01-01", "2024-01-01T00:00:00Z"),
        # Epoch seconds / milliseconds as numbers and digit strings.
        (1704103200, "2024-01-01T10:00:00Z"),
        (1704103200123, "2024-01-01T10:00:00.123Z"),
        (1704103200.5, "2024-01-01T10:00:00.500Z"),
        (Decimal("1704103200123"), "2024-01-01T10:00:00.123Z"),
        ("1704103200123", "2024-01-01T10:00:00.123Z"),
        ("1704103200", "2024-01-01T10:00:00Z"),
        # datetime / date objects (the SDK parses format: date-time into datetime).
        (dt.datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC), "2024-01-01T10:00:00.123Z"),
        (dt.datetime(2024, 1, 1, 10, 0, 0, 999999), "2024-01-01T10:00:00.999Z"),  # truncated
        (dt.datetime(2024, 1, 1, 10, 0, 0, 500), "2024-01-01T10:00:00Z"),  # under 1 ms: none
        ("2024-01-01 10:00:00.000010", "2024-01-01T10:00:00Z"),
        (dt.datetime(2024, 1, 1, 10), "2024-01-01T10:00:00Z"),  # naive means UTC
        (
            dt.datetime(2024, 1, 1, 11, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2024-01-01T10:00:00Z",
        ),
        (dt.date(2024, 1, 1), "2024-01-01T00:00:00Z"),
        (dt.datetime(999, 1, 1), "0999-01-01T00:00:00Z"),  # year padded to 4 digits
    ],
)
def test_formats(value, expected):
    assert to_iso_utc(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-01-01T25:00:00Z",
        "2024-01-01T10:00:00.1a3Z",  # canonical shape, bad digits
        "0000-01-01T00:00:00Z",
        None,
        True,
        False,
        float("nan"),
        float("inf"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        10**400,
        10**20,
        {"a": 1},
        ["2024-01-01"],
        b"2024-01-01",
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    ],
)
def test_not_a_time_raises_value_error(value):
    with pytest.raises(ValueError):
        to_iso_utc(value)


def test_equal_instants_give_equal_text_whatever_the_form():
    forms = [
        "2024-01-01 10:00:00.123456",
        "2024-01-01T10:00:00.123456Z",
        "2024-01-01T10:00:00.123000Z",
        "2024-01-01T10:00:00.123456+00:00",
        "2024-01-01T10:00:00.123Z",
        dt.datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 10, 0, 0, 123000),
        1704103200123,
    ]
    assert {to_iso_utc(form) for form in forms} == {"2024-01-01T10:00:00.123Z"}


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 1, 1, 10, 0, 0, 10),
        dt.datetime(2024, 1, 1, 10, 0, 0, 1000),
        dt.datetime(2024, 1, 1, 10, 0, 0, 999999),
        "2024-01-01T10:00:00.000999+00:00",
        1704103200001,
    ],
)
def test_idempotent(value):
    once = to_iso_utc(value)
    assert to_iso_utc(once) == once


_LAYOUTS = [
    lambda m: m.strftime("%Y-%m-%d %H:%M:%S.%f"),  # raw export
    lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # singer-python
    lambda m: m.replace(tzinfo=UTC).isoformat(),  # Airbyte (drops a zero fraction)
    lambda m: m.isoformat(timespec="milliseconds") + "Z",
    lambda m: m.isoformat(timespec="seconds") + "Z",
    lambda m: m.isoformat(timespec="milliseconds") + "+00:00",
    lambda m: m.strftime("%Y-%m-%dT%H:%M:%S"),
]


@settings(max_examples=examples(300), deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.sampled_from(range(len(_LAYOUTS))),
)
def test_text_fast_path_agrees_with_datetime_formatting(moment, layout):
    text = _LAYOUTS[layout](moment)
    expected_moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    assert to_iso_utc(text) == to_iso_utc(expected_moment)


# --- property: to_iso_utc behaves exactly as the reference copy -------------------------------
# (tests/support/dates_reference.py: a frozen copy of to_iso_utc before its hot path was tuned)


@settings(max_examples=examples(2000), deadline=None)
@given(time_values)
def test_same_outcome_as_reference(value):
    assert outcome(to_iso_utc, value) == outcome(reference_to_iso_utc, value)
