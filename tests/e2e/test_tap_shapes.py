"""Every Amplitude tap's output, run through the real ``target-planhat`` CLI, gives the same result.

The fixtures in ``tests/data/taps/`` hold the same 8 events as each public Amplitude tap writes
them (see ``tests/data/taps/generate.py`` for where each shape comes from). With the same config,
the activities the target writes must be identical whichever tap produced the input.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import TARGET_BIN

TAPS_DIR = Path(__file__).resolve().parents[1] / "data" / "taps"
FIXTURES = sorted(TAPS_DIR.glob("*.singer.jsonl"))
FIRST = TAPS_DIR / "airbyte_source_amplitude.singer.jsonl"

ALICE = {"user.plan": "pro", "user.role": "admin", "user.beta": False, "user.seats": 25}
BOB = {"user.plan": "pro", "user.role": "member", "user.beta": True, "user.seats": None}
CAROL = {
    "user.plan": "basic",
    "user.role": "owner",
    "user.referrer": {"source": "ads", "campaign": "q1"},
}
ACME = {"group.company": {"tier": "gold", "arr": 120000, "active": True}}

# What the default mapping must make of the fixtures' events (the anonymous one is rejected).
EXPECTED_DEFAULT: list[dict[str, Any]] = [
    {
        "externalId": "alice@acme.example",
        "companyExternalId": "acme-1",
        "action": "Viewed Dashboard",
        "date": "2024-01-01T10:00:00.123Z",
        "info": {"dashboard": "Revenue", "widgets": 4, "shared": True, "filter": None}
        | ALICE
        | ACME,
    },
    {
        "externalId": "alice@acme.example",
        "companyExternalId": "acme-1",
        "action": "Exported Report",
        "date": "2024-01-01T10:05:07Z",
        "info": {
            "format": "csv",
            "rows": 1200,
            "filters": {"region": ["EU", "US"], "since": "2023-12-01", "archived": False},
        }
        | ALICE
        | ACME,
    },
    {
        "externalId": "bob@acme.example",
        "companyExternalId": "acme-1",
        "action": "Login",
        "date": "2024-01-01T10:30:01.999Z",
        "info": {"method": "sso", "mfa": True, "score": 0.75} | BOB | ACME,
    },
    {
        "externalId": "bob@acme.example",
        "companyExternalId": "acme-1",  # first of ["acme-1", "acme-2"]
        "action": "Created Project",
        "date": "2024-01-01T11:00:00.001Z",
        "info": {"project_id": 42, "template": None, "tags": ["q1", "launch"], "public": False}
        | BOB
        | ACME,
    },
    {
        "externalId": "carol@globex.example",
        "companyExternalId": "globex",
        "action": "Login",
        "date": "2024-01-01T11:45:30.250Z",
        "info": {"method": "password", "mfa": False, "score": 0.5}
        | CAROL
        | {"group.company": {"tier": "silver", "arr": 48000.5, "active": True}},
    },
    {
        "externalId": "carol@globex.example",
        "action": "Invited User",
        "date": "2024-01-01T12:00:00Z",
        "info": {"invitee_role": "viewer", "seats": 3, "note": "Grüße aus Zürich ✓"} | CAROL,
    },
    {
        "externalId": "dave@initech.example",
        "companyExternalId": "initech",
        "action": "Upgraded Plan",
        "date": "2024-01-01T13:30:00Z",
        "info": {"from": "basic", "to": "pro", "amount": 499.0, "currency": "EUR", "annual": True}
        | {"user.plan": "basic", "user.role": "owner", "user.locale": "de-CH"}
        | {"group.company": {"tier": "bronze", "arr": 0, "active": False}},
    },
]

CUSTOM = {
    "mapping": {
        "externalId": "$.user_id",
        "companyExternalId": "$.groups.company",
        "action": "$.event_type",
        "date": "$.server_upload_time",
        "count": "$.event_properties.seats",
        "info": {
            "plan": "$.user_properties.plan",
            "tier": "$.group_properties.company.tier",
            "arr": "$.group_properties.company.arr",
            "amplitude_id": "$.amplitude_id",
            "session_id": "$.session_id",
            "event_id": "$.event_id",
            "city": "$.city",
            "created": "$.user_creation_time",
            "first_event": "$.data.first_event",
        },
    },
    "event_filters": {
        "*": {
            "exclude": ["Viewed *"],
            "where": [
                {"path": "$.amplitude_id", "op": "gt", "value": 987654301},
                {"path": "$.session_id", "op": "gte", "value": 1704099601000},
                {
                    "path": "$.user_properties.role",
                    "op": "in",
                    "value": ["admin", "member", "owner"],
                },
            ],
        },
    },
}


def run_dry(fixture: Path, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """Run the target CLI on ``fixture`` in dry-run mode; return what it wrote."""
    work = tmp_path / fixture.name.split(".")[0]
    work.mkdir()
    config = {
        "dry_run": True,
        "dry_run_writes_state": True,  # these tests follow the tap's STATE through the target
        "dry_run_path": str(work / "out.jsonl"),
        "dead_letter_path": str(work / "rej.jsonl"),
        "ledger_path": str(work / "l.sqlite"),
        "report_path": str(work / "r.json"),
        **settings,
    }
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    done = subprocess.run(
        [TARGET_BIN, "--config", str(config_path), "--input", str(fixture)],
        capture_output=True,
        timeout=120,
        cwd=work,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = work / "out.jsonl"
    rejected = work / "rej.jsonl"
    return {
        "activities": [json.loads(line) for line in out.read_text().splitlines()],
        "rejected": [json.loads(line) for line in rejected.read_text().splitlines()]
        if rejected.exists()
        else [],
        "states": [json.loads(line) for line in done.stdout.decode().splitlines() if line],
        "report": json.loads((work / "r.json").read_text()),
    }


def last_state_of(fixture: Path) -> Any:
    states = [
        json.loads(line)["value"]
        for line in fixture.read_text().splitlines()
        if json.loads(line)["type"] == "STATE"
    ]
    return states[-1]


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    return {fixture.name: run_dry(fixture, tmp) for fixture in FIXTURES}


@pytest.fixture(scope="module")
def custom_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("custom")
    return {fixture.name: run_dry(fixture, tmp, **CUSTOM) for fixture in FIXTURES}


def test_first_tap_gives_the_expected_activities(default_runs):
    assert default_runs[FIRST.name]["activities"] == EXPECTED_DEFAULT


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name.split(".")[0])
def test_default_config_gives_identical_activities_for_every_tap(default_runs, fixture):
    run = default_runs[fixture.name]
    assert run["activities"] == default_runs[FIRST.name]["activities"]
    # Numbers keep their JSON type too (1.0 == 1 in Python, not in a diff of the output).
    assert json.dumps(run["activities"]) == json.dumps(EXPECTED_DEFAULT)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name.split(".")[0])
def test_anonymous_event_is_rejected_and_nothing_is_unparsed(default_runs, fixture):
    run = default_runs[fixture.name]
    assert len(run["rejected"]) == 1
    assert run["rejected"][0]["reason"] == "no_identifier"
    assert run["report"]["received"] == 8
    assert run["report"]["rejected"] == 1
    assert run["report"]["shape_problems"] == {}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name.split(".")[0])
def test_final_state_is_the_taps_last_state(default_runs, fixture):
    run = default_runs[fixture.name]
    assert run["states"], "the target wrote no STATE"
    assert run["states"][-1] == last_state_of(fixture)


EXPECTED_CUSTOM_IDS = [  # (action, amplitude_id) after exclude "Viewed *" and the where rules
    ("Exported Report", 987654302),
    ("Login", 987654303),
    ("Created Project", 987654304),
    ("Login", 987654305),
    ("Invited User", 987654306),
    ("Upgraded Plan", 987654308),
]


def test_custom_mapping_and_filters_on_first_tap(custom_runs):
    run = custom_runs[FIRST.name]
    got = [(a["action"], a["info"]["amplitude_id"]) for a in run["activities"]]
    assert got == EXPECTED_CUSTOM_IDS
    first = run["activities"][0]
    assert first == {
        "externalId": "alice@acme.example",
        "companyExternalId": "acme-1",
        "action": "Exported Report",
        "date": "2024-01-01T10:05:09.345Z",
        "info": {
            "plan": "pro",
            "tier": "gold",
            "arr": 120000,
            "amplitude_id": 987654302,
            "session_id": 1704099602000,
            "event_id": 102,
            "city": "Berlin",
            "created": "2024-01-01T09:00:00Z",
        },
    }
    invited = run["activities"][4]
    assert invited["count"] == 3
    assert "companyExternalId" not in invited
    # Amplitude ids are ints in the output whatever the tap wrote (floats, NUMBER columns).
    assert all(type(a["info"]["session_id"]) is int for a in run["activities"])
    # Both "Viewed ..." events, the anonymous one included: filters run before validation.
    assert run["report"]["filtered"] == 2
    assert run["report"]["filtered_by"] == {"*: exclude Viewed *": 2}
    assert run["report"]["rejected"] == 0


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name.split(".")[0])
def test_custom_config_gives_identical_activities_for_every_tap(custom_runs, fixture):
    run = custom_runs[fixture.name]
    first = custom_runs[FIRST.name]
    assert json.dumps(run["activities"]) == json.dumps(first["activities"])
    assert run["report"]["filtered_by"] == first["report"]["filtered_by"]
