"""Config that cannot work fails at start-up: exit 2, one line naming the setting, nothing read,
nothing sent.

"Nothing read" is shown by feeding input that fails the run if it is read (a line that is not
JSON): a config error must win. "Nothing sent" by pointing ``api_url`` at a loopback Planhat that
must get no request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Result, base_config, event, run_target, singer_lines
from tests.support.receiver import TOKEN, PlanhatReceiver

POISON = b"this line is not JSON: reading it fails the run\n"


def _blocker(tmp_path: Path) -> Path:
    """A regular file: no path below it can be created."""
    path = tmp_path / "not-a-folder"
    path.write_text("x")
    return path


# (id, config overrides (callable gets tmp_path), the setting the message must name)
CASES: list[tuple[str, Any, str]] = [
    ("mapping_bad_jsonpath", {"mapping": {"action": "$.[[["}}, "mapping.action"),
    ("mapping_info_bad_jsonpath", {"mapping": {"info": ["$.ok", "$..["]}}, "mapping.info[1]"),
    ("mapping_info_key_bad_jsonpath", {"mapping": {"info": {"plan": "$.[["}}}, "mapping.info.plan"),
    ("mapping_unknown_field", {"mapping": {"actoin": "$.event_type"}}, "mapping"),
    (
        "filter_where_bad_jsonpath",
        {"event_filters": {"*": {"where": [{"path": "$..[", "op": "exists"}]}}},
        "event_filters.*.where[0].path",
    ),
    (
        "filter_unknown_op",
        {"event_filters": {"events": {"where": [{"path": "$.x", "op": "like", "value": 1}]}}},
        "event_filters.events.where[0].op",
    ),
    (
        "filter_unknown_key",
        {"event_filters": {"events": {"includes": ["Login"]}}},
        "event_filters.events",
    ),
    ("dedupe_key_bad_jsonpath", {"dedupe_key": ["$.uuid", "$.[[["]}, "dedupe_key"),
    ("tenant_token_missing", {"tenant_token": None}, "tenant_token"),
    ("tenant_token_blank", {"tenant_token": "   "}, "tenant_token"),
    ("api_url_http_remote", {"api_url": "http://analytics.planhat.com"}, "api_url"),
    ("api_url_http_private_ip", {"api_url": "http://10.1.2.3:8080"}, "api_url"),
    ("api_url_http_localhost_lookalike", {"api_url": "http://localhost.example.com"}, "api_url"),
    ("api_url_not_http", {"api_url": "ftp://analytics.planhat.com"}, "api_url"),
    (
        "dead_letter_path_unwritable",
        lambda tmp: {"dead_letter_path": str(_blocker(tmp) / "rejected.jsonl")},
        "dead_letter_path",
    ),
    (
        "dead_letter_path_is_a_folder",
        lambda tmp: {"dead_letter_path": str(tmp)},
        "dead_letter_path",
    ),
    (
        "dry_run_path_unwritable",
        lambda tmp: {"dry_run": True, "dry_run_path": str(_blocker(tmp) / "dry.jsonl")},
        "dry_run_path",
    ),
    (
        "report_path_unwritable",
        lambda tmp: {"report_path": str(_blocker(tmp) / "report.json")},
        "report_path",
    ),
    (
        "ledger_path_unwritable",
        lambda tmp: {"ledger_path": str(_blocker(tmp) / "ledger.sqlite")},
        "ledger_path",
    ),
    ("max_event_bytes_negative", {"max_event_bytes": -1}, "max_event_bytes"),
    (
        "max_request_bytes_over_planhat_limit",
        {"max_request_bytes": 40_000_000},
        "max_request_bytes",
    ),
    ("max_event_bytes_over_request", {"max_event_bytes": 9_000_000}, "max_event_bytes"),
    ("checkpoint_seconds_zero", {"checkpoint_seconds": 0}, "checkpoint_seconds"),
]

# Refused by the SDK's JSON-schema check of the config, before the target's own checks.
SCHEMA_CASES: list[tuple[str, Any, str]] = [
    ("on_invalid_record_unknown", {"on_invalid_record": "explode"}, "on_invalid_record"),
    ("streams_not_a_list", {"streams": "events"}, "streams"),
    ("mapping_not_an_object", {"mapping": "$.user_id"}, "mapping"),
]


def run_config_error(tmp_path: Path, overrides: Any) -> tuple[Result, PlanhatReceiver]:
    if callable(overrides):
        overrides = overrides(tmp_path)
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        config.update(overrides)
        config = {key: value for key, value in config.items() if value is not None}
        result = run_target(config, POISON + singer_lines([event(1)]).encode(), tmp_path)
    return result, planhat


def assert_config_error(result: Result, planhat: PlanhatReceiver, setting: str, code: int = 2):
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr
    assert result.returncode == code, result.stderr[-3000:]
    assert "Invalid input" not in result.stderr, "input was read before the config was checked"
    assert "not valid JSON" not in result.stderr
    assert planhat.requests() == [], "something was sent"
    assert result.stdout == "", "no STATE may be written"
    errors = [line for line in result.stderr.splitlines() if "| ERROR " in line]
    assert len(errors) == 1, errors
    assert f"Configuration error: {setting}" in errors[0]
    assert result.report is None, "no run happened, so there is nothing to report"


@pytest.mark.parametrize(
    ("overrides", "setting"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_config_error_names_the_setting_before_reading_input(tmp_path, overrides, setting):
    result, planhat = run_config_error(tmp_path, overrides)
    assert_config_error(result, planhat, setting)


@pytest.mark.parametrize(
    ("overrides", "setting"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_config_schema_error_exits_2_naming_the_setting(tmp_path, overrides, setting):
    result, planhat = run_config_error(tmp_path, overrides)
    assert_config_error(result, planhat, setting)


def test_plain_http_to_a_name_that_looks_like_loopback_is_refused(tmp_path):
    result, planhat = run_config_error(tmp_path, {"api_url": "http://127.attacker.example"})
    assert_config_error(result, planhat, "api_url")


def test_missing_token_is_fine_in_dry_run(tmp_path):
    config = base_config(tmp_path, dry_run=True)
    result = run_target(config, singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["dry_run_written"] == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
def test_plain_http_to_loopback_is_accepted(tmp_path, host):
    """Accepted at start-up: a run without records makes no request, so no server is needed."""
    config = base_config(tmp_path, tenant_token=TOKEN, api_url=f"http://{host}:9")
    result = run_target(config, singer_lines([]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Configuration error" not in result.stderr
    assert result.states == [{"bookmarks": {"events": {"n": 0}}}]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_to_loopback_really_sends(tmp_path, host):
    with PlanhatReceiver() as planhat:
        url = planhat.url.replace("127.0.0.1", host)
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=url)
        result = run_target(config, singer_lines([event(1), event(2)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(planhat.kept_activities()) == 2


def test_dead_letter_path_is_not_checked_unless_used(tmp_path):
    """``skip`` never writes the dead-letter file, so its path does not have to work."""
    overrides = {
        "on_invalid_record": "skip",
        "dead_letter_path": str(_blocker(tmp_path) / "rejected.jsonl"),
        "dry_run": True,
    }
    result = run_target(base_config(tmp_path, **overrides), singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_config_file_that_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"tenant_token": "' + TOKEN + '", ')
    result = run_target(path, POISON, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr
    assert "Invalid input" not in result.stderr


def test_mapping_that_matches_nothing_is_reported_not_refused(tmp_path):
    """A mapping that parses but points nowhere is not a config error: the report shows it."""
    config = base_config(tmp_path, dry_run=True, mapping={"externalId": "$.no_such_field"})
    result = run_target(config, singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0
    assert result.report["rejected_by"] == {"no_identifier": 1}
    warnings = [line for line in result.stderr.splitlines() if "| WARNING " in line]
    assert any("sent none" in line and "no_identifier" in line for line in warnings)
    assert json.loads((tmp_path / "report.json").read_text())["rejected_by"] == {"no_identifier": 1}
