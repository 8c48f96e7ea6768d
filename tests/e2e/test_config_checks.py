"""Typos, string settings and dry-run STATE, through the real CLI against a loopback Planhat.

A refused config must stop the run before anything is read or sent: the input starts with a line
that fails the run if read, and ``api_url`` points at a receiver that must get no request.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Result, base_config, event, run_target, singer_lines
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

POISON = b"this line is not JSON: reading it fails the run\n"


def _live(tmp_path: Path, planhat: PlanhatReceiver, **overrides: Any) -> dict[str, Any]:
    return base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **overrides)


def _refused(tmp_path: Path, overrides: dict[str, Any], env: dict[str, str] | None = None):
    with PlanhatReceiver() as planhat:
        config = _live(tmp_path, planhat, **overrides)
        args = ["--config", "ENV"] if env else None
        data = POISON + singer_lines([event(1)]).encode()
        result = run_target(config, data, tmp_path, extra_args=args, env=env)
    return result, planhat


def _one_config_error(result: Result, planhat: PlanhatReceiver) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr
    assert "Invalid input" not in result.stderr, "input was read before the config was checked"
    assert planhat.requests() == [], "something was sent"
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "| ERROR " in line]
    assert len(errors) == 1, errors
    return errors[0].split("Configuration error: ", 1)[1]


@pytest.mark.parametrize(
    ("typo", "value", "known"),
    [
        ("dryrun", True, "dry_run"),
        ("mappings", {"action": "$.event_type"}, "mapping"),
        ("tenant_tokn", "x" * 12, "tenant_token"),
        ("batch_size_row", 10, "batch_size_rows"),
        ("stream_map", {}, "stream_maps"),
    ],
)
def test_a_misspelled_setting_stops_the_run_naming_the_closest_one(tmp_path, typo, value, known):
    result, planhat = _refused(tmp_path, {typo: value})
    message = _one_config_error(result, planhat)
    assert message == f"{typo}: unknown setting; did you mean `{known}`?"


def test_a_setting_like_no_other_points_to_about(tmp_path):
    result, planhat = _refused(tmp_path, {"zzz_qqq": 1})
    assert _one_config_error(result, planhat) == (
        "zzz_qqq: unknown setting; see `target-planhat --about` for them all"
    )


def test_every_unknown_setting_is_named_at_once(tmp_path):
    result, planhat = _refused(tmp_path, {"dryrun": True, "mappings": {}})
    message = _one_config_error(result, planhat)
    assert "dryrun: unknown setting; did you mean `dry_run`?" in message
    assert "mappings: unknown setting; did you mean `mapping`?" in message


def test_the_sdks_own_settings_are_accepted(tmp_path):
    sdk_settings = {
        "batch_size_rows": 2,
        "add_record_metadata": False,
        "load_method": "append-only",
        "validate_records": True,
        "stream_maps": {"events": {"__alias__": "events"}},
        "stream_map_config": {"x": 1},
        "faker_config": {"locale": "en_US"},
        "flattening_enabled": False,
        "flattening_max_depth": 1,
        "flattening_max_key_length": 100,
        "flattening_separator": "__",
    }
    with PlanhatReceiver() as planhat:
        config = _live(tmp_path, planhat, **sdk_settings)
        result = run_target(config, singer_lines([event(n) for n in range(1, 6)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.report["sent"] == 5
    assert len(planhat.requests()) == 3  # batch_size_rows: 2 took effect


def test_strings_where_the_schema_wants_json_are_parsed(tmp_path):
    """What Meltano passes for undeclared settings: every value a string."""
    with PlanhatReceiver() as planhat:
        config = _live(
            tmp_path,
            planhat,
            mapping=json.dumps({"companyExternalId": "$.user_properties.plan"}),
            streams='["events"]',
            dedupe="false",
            max_request_bytes="2000000",
            request_timeout="30.5",
            batch_size_rows="2",
        )
        result = run_target(config, singer_lines([event(n) for n in range(1, 4)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sent = planhat.kept_activities()
    assert [a["companyExternalId"] for a in sent] == ["pro", "pro", "pro"]
    assert len(planhat.requests()) == 2
    assert not (tmp_path / "ledger.sqlite").exists()  # dedupe "false" is false


def test_a_dry_run_given_as_a_string_stays_dry(tmp_path):
    with PlanhatReceiver() as planhat:
        config = _live(tmp_path, planhat, dry_run="true")
        result = run_target(config, singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planhat.requests() == []
    assert result.report["dry_run_written"] == 1


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("dry_run", "yes", "dry_run: the string 'yes' is not JSON; it must be true or false"),
        ("dry_run", "True", "dry_run: the string 'True' is not JSON; it must be true or false"),
        (
            "mapping",
            "{'action': '$.event_type'}",
            "mapping: the string \"{'action': '$.event_type'}\" is not JSON; it must be a JSON "
            'object like {"key": "value"}',
        ),
        (
            "streams",
            "events",
            'streams: the string \'events\' is not JSON; it must be a JSON array like ["a", "b"]',
        ),
        (
            "streams",
            '{"events": 1}',
            "streams: the string '{\"events\": 1}' is JSON of another kind; it must be a JSON "
            'array like ["a", "b"]',
        ),
        (
            "request_timeout",
            "60s",
            "request_timeout: the string '60s' is not JSON; it must be a number like 60 or 0.5",
        ),
        (
            "batch_size_rows",
            "2.5",
            "batch_size_rows: the string '2.5' is JSON of another kind; it must be a whole "
            "number like 60",
        ),
    ],
)
def test_a_string_that_is_not_the_wanted_json_is_a_config_error(tmp_path, setting, value, expected):
    result, planhat = _refused(tmp_path, {setting: value})
    assert _one_config_error(result, planhat) == expected


def test_environment_variables_are_parsed_as_strict_json_too(tmp_path):
    """``--config ENV``: the SDK alone would read "yes" as true and send for real."""
    result, planhat = _refused(tmp_path, {}, env={"TARGET_PLANHAT_DRY_RUN": "yes"})
    assert _one_config_error(result, planhat) == (
        "dry_run: the string 'yes' is not JSON; it must be true or false"
    )


def test_environment_variables_that_are_json_work(tmp_path):
    env = {
        "TARGET_PLANHAT_DRY_RUN": "true",
        "TARGET_PLANHAT_MAPPING": '{"action": "$.user_properties.plan"}',
    }
    with PlanhatReceiver() as planhat:
        config = _live(tmp_path, planhat)
        args = ["--config", "ENV"]
        result = run_target(config, singer_lines([event(1)]), tmp_path, extra_args=args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planhat.requests() == []
    written = [json.loads(line) for line in (tmp_path / "dry-run.jsonl").read_text().splitlines()]
    assert [a["action"] for a in written] == ["pro"]


def test_a_dry_run_writes_no_state_so_a_live_run_still_sends_everything(tmp_path):
    records = [event(n) for n in range(1, 6)]
    with PlanhatReceiver() as planhat:
        dry = run_target(_live(tmp_path, planhat, dry_run=True), singer_lines(records), tmp_path)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert dry.stdout == "", "a dry run moved the bookmark"
        assert dry.report["states_written"] == 0
        assert "Dry run: no STATE is written" in dry.stderr
        assert planhat.requests() == []
        live = run_target(_live(tmp_path, planhat), singer_lines(records), tmp_path)
    assert live.returncode == 0, live.stderr[-3000:]
    assert live.report["sent"] == 5 and live.report["duplicates_skipped"] == 0
    assert live.states == [{"bookmarks": {"events": {"n": 5}}}]


def test_dry_run_writes_state_opts_in(tmp_path):
    config = base_config(tmp_path, dry_run=True, dry_run_writes_state=True)
    result = run_target(config, singer_lines([event(1), event(2)], state_every=1), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.states[-1] == {"bookmarks": {"events": {"n": 2}}}
    assert result.report["dry_run_written"] == 2


def test_start_up_log_names_the_files_the_run_writes(tmp_path):
    with PlanhatReceiver() as planhat:
        live = run_target(_live(tmp_path, planhat), singer_lines([]), tmp_path)
    line = next(x for x in live.stderr.splitlines() if "Files this run writes" in x)
    assert f"dead letter: {tmp_path / 'rejected.jsonl'}" in line
    assert f"report: {tmp_path / 'report.json'}" in line
    assert f"ledger: {tmp_path / 'ledger.sqlite'}" in line
    assert "dry run:" not in line

    dry = run_target(base_config(tmp_path, dry_run=True), singer_lines([]), tmp_path)
    line = next(x for x in dry.stderr.splitlines() if "Files this run writes" in x)
    assert f"dry run: {tmp_path / 'dry-run.jsonl'}" in line
    assert "ledger:" not in line


def test_api_url_with_a_path_is_a_config_error(tmp_path):
    """It used to POST to /analytics/analytics/bulk/... and exit 0."""
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url + "/analytics")
        result = run_target(config, POISON + singer_lines([event(1)]).encode(), tmp_path)
    assert _one_config_error(result, planhat) == (
        f"api_url: must be the host only, like {planhat.url!r}; it has path '/analytics' "
        "(the target adds the endpoint's path itself)"
    )


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refused_tenant_token_says_to_check_it(tmp_path, status):
    with PlanhatReceiver(lambda index, body: Reply(status, body=b"unknown tenant")) as planhat:
        result = run_target(_live(tmp_path, planhat), singer_lines([event(1)]), tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(planhat.requests()) == 1  # not retried
    errors = [line for line in result.stderr.splitlines() if "| ERROR " in line]
    assert any(
        f"HTTP {status}" in line
        and f"(check tenant_token: Planhat refuses a token it does not know with {status})" in line
        for line in errors
    ), errors
    assert TOKEN not in result.stderr
    assert result.stdout == ""


def _warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "| WARNING " in line]


def test_a_mapped_field_missing_from_every_activity_is_named(tmp_path):
    """The issue's case: a companyExternalId path that matched nothing, 50 of 50 times."""
    records = [event(n, groups={}) for n in range(1, 51)]
    config = base_config(tmp_path, dry_run=True)
    result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.report["missing_fields"] == {"companyExternalId": 50}
    named = [w for w in _warnings(result) if "mapping.companyExternalId" in w]
    assert len(named) == 1
    assert (
        "mapping.companyExternalId ($.groups.company) was missing in all 50 activities"
        in (named[0])
    )
    assert json.loads((tmp_path / "report.json").read_text())["missing_fields"] == {
        "companyExternalId": 50
    }


def test_missing_fields_below_20_activities_are_counted_not_warned(tmp_path):
    records = [event(n, groups={}) for n in range(1, 20)]
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.report["missing_fields"] == {"companyExternalId": 19}
    assert not [w for w in _warnings(result) if "mapping." in w]


def test_a_rerun_that_skips_most_as_delivered_says_how_to_resend(tmp_path):
    records = [event(n) for n in range(1, 33)]
    with PlanhatReceiver() as planhat:
        first = run_target(_live(tmp_path, planhat), singer_lines(records), tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        assert not [w for w in _warnings(first) if "already delivered" in w]
        again = run_target(_live(tmp_path, planhat), singer_lines(records), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.report["duplicates_skipped"] == 32 and again.report["sent"] == 0
    hint = [w for w in _warnings(again) if "already delivered" in w]
    assert len(hint) == 1
    assert (
        f"32 of 32 activities were skipped as already delivered: the ledger at "
        f"{tmp_path / 'ledger.sqlite'} holds their ids"
    ) in hint[0]
    assert "target-planhat --config FILE --forget-delivered" in hint[0]
    assert TOKEN not in again.stderr


def test_a_replayed_event_rejected_again_is_counted_not_dead_lettered_again(tmp_path):
    records = [event(n) for n in range(1, 4)] + [event(n, user=None) for n in range(4, 7)]
    dead_letter = tmp_path / "rejected.jsonl"
    with PlanhatReceiver() as planhat:
        first = run_target(_live(tmp_path, planhat), singer_lines(records), tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        assert len(dead_letter.read_text().splitlines()) == 3
        # Remembered under the events' hour (2024-01-01T10), so a settle's keys are neighbours.
        with contextlib.closing(sqlite3.connect(tmp_path / "ledger.sqlite")) as db:
            stored = [r[0] for r in db.execute("SELECT id FROM tp_rejected")]
        assert len(stored) == 3 and {i[:10] for i in stored} == {"2024010110"}
        again = run_target(_live(tmp_path, planhat), singer_lines(records), tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.report["rejected_by"] == {"no_identifier": 3}
        assert again.report["rejected_again"] == 3
        assert len(dead_letter.read_text().splitlines()) == 3, "written again"
        # Another tenant sharing the ledger file has its own memory.
        other = base_config(tmp_path, tenant_token="tok-OTHER-77", api_url=planhat.url)
        third = run_target(other, singer_lines(records), tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.report["rejected_again"] == 0
    assert len(dead_letter.read_text().splitlines()) == 6
