"""``target.TargetPlanhat``: config validation (errors naming the setting), the CLI hook, and
runs driven in-process through the SDK against a receiver on 127.0.0.1."""

from __future__ import annotations

import copy
import io
import json
import signal
import tempfile
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class

from target_planhat import about, redact
from target_planhat.errors import StopRequested
from target_planhat.settings import ConfigError
from target_planhat.target import TargetPlanhat
from tests.support.cli import base_config, event, singer_lines
from tests.support.inprocess import isolated_cli, run_in_process
from tests.support.receiver import TOKEN

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = ROOT / "sample_config.json"

# --- sample_config.json is a working, complete example of the target's settings --------------


def _sample() -> dict:
    return json.loads(SAMPLE_CONFIG.read_text(encoding="utf-8"))


def _sdk_builtin_settings() -> dict[str, dict]:
    """Settings the Singer SDK appends to every target's schema, by name -> JSON schema."""
    from singer_sdk.helpers import capabilities

    builtin: dict[str, dict] = {}
    for name in dir(capabilities):
        value = getattr(capabilities, name)
        if name.endswith("_CONFIG") and isinstance(value, dict) and "properties" in value:
            builtin.update(value["properties"])
    return builtin


def _own_settings() -> set[str]:
    """Settings TargetPlanhat defines itself: not SDK built-ins, or built-ins it redefines."""
    from target_planhat.target import TargetPlanhat

    builtin = _sdk_builtin_settings()
    properties = TargetPlanhat.config_jsonschema["properties"]
    return {
        name
        for name, schema in properties.items()
        if name not in builtin or schema != builtin[name]
    }


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    # The target checks at start-up that its output files can be written (and creates them):
    # keep the relative paths of the sample config out of the checkout.
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sample_config_is_valid_json_object():
    config = _sample()
    assert isinstance(config, dict)
    assert config["tenant_token"] == "YOUR-PLANHAT-TENANT-TOKEN"


def test_sample_config_passes_the_targets_config_validation(in_tmp):
    from target_planhat.target import TargetPlanhat

    TargetPlanhat(config=_sample(), validate_config=True)


def test_sample_config_lists_every_setting_the_target_defines():
    missing = sorted(_own_settings() - set(_sample()))
    assert not missing, f"sample_config.json lacks target setting(s): {', '.join(missing)}"


def test_sample_config_has_no_unknown_settings():
    from target_planhat.target import TargetPlanhat

    known = set(TargetPlanhat.config_jsonschema["properties"]) | set(_sdk_builtin_settings())
    unknown = sorted(set(_sample()) - known)
    assert not unknown, f"sample_config.json has setting(s) the target does not know: {unknown}"


def test_sample_config_mapping_and_filters_use_the_documented_shapes():
    from target_planhat.mapping import FIELDS

    config = _sample()
    mapping = config["mapping"]
    assert mapping["companyExternalId"] == "$.groups.company"
    assert set(mapping) <= set(FIELDS)
    filters = config["event_filters"]
    assert set(filters) <= {"*", "event", "events"} | set(config["streams"])
    ops = {"eq", "ne", "in", "not_in", "exists", "not_exists", "gt", "gte", "lt", "lte", "matches"}
    for rule in filters.values():
        assert set(rule) <= {"include", "exclude", "where"}
        for condition in rule.get("where", []):
            assert condition["op"] in ops
    assert config["on_invalid_record"] in {"dead_letter", "skip", "fail"}


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("mapping", {"externalId": "$.user_id", "nosuchfield": "$.x"}),
        ("event_filters", {"*": {"where": [{"path": "$.x", "op": "nosuchop", "value": 1}]}}),
        ("on_invalid_record", "explode"),
    ],
)
def test_a_broken_copy_of_the_sample_is_refused(in_tmp, key, bad):
    """The validation above is not vacuous: the same call refuses a broken setting."""
    from target_planhat.target import TargetPlanhat

    config = copy.deepcopy(_sample())
    config[key] = bad
    with pytest.raises(Exception):  # noqa: B017 - the SDK's and the target's own error types
        TargetPlanhat(config=config, validate_config=True)


# --- config validation: errors name the setting ------------------------------------------------


def _config(tmp_path: Path, **overrides: object) -> dict:
    config = base_config(tmp_path, **{"tenant_token": TOKEN, **overrides})
    return {key: value for key, value in config.items() if value is not None}


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"mapping": {"action": "$.[[["}}, "mapping.action"),
        ({"mapping": {"info": ["$.ok", "$..["]}}, "mapping.info[1]"),
        ({"event_filters": {"*": {"where": [{"path": "$.x", "op": "like"}]}}}, "event_filters"),
        ({"dedupe_key": ["$.uuid", "$.[[["]}, "dedupe_key"),
        ({"tenant_token": None}, "tenant_token"),
        ({"api_url": "http://analytics.planhat.com"}, "api_url"),
        ({"max_event_bytes": -1}, "max_event_bytes"),
        ({"checkpoint_seconds": 0}, "checkpoint_seconds"),
        ({"on_invalid_record": "explode"}, "on_invalid_record"),  # the SDK's schema check
        ({"streams": "events"}, "streams"),
    ],
)
def test_config_error_names_the_setting(tmp_path: Path, overrides: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TargetPlanhat(config=_config(tmp_path, **overrides), validate_config=True)
    assert str(caught.value).startswith(setting), str(caught.value)


def test_an_unknown_setting_is_refused_naming_the_closest_known_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dryrun: unknown setting; did you mean `dry_run`"):
        TargetPlanhat(config=_config(tmp_path, dryrun=True), validate_config=True)


def test_a_valid_config_builds_the_runtime_and_masks_the_token(tmp_path: Path) -> None:
    token = "target-test-token-only-here-7731"  # registered by nothing else in the session
    assert redact.redact(token) == token
    target = TargetPlanhat(config=_config(tmp_path, tenant_token=token), validate_config=True)
    try:
        assert target.runtime is not None and target.runtime.settings.tenant_token == token
        assert redact.redact(f"url /{token}") == f"url /{redact.MASK}"
    finally:
        target.close()


def test_signals_stop_the_run_but_only_count_once_it_winds_down(tmp_path: Path) -> None:
    """While STATE, the report and close() are written after a stop or failure, a further signal
    is counted (a second one abandons the POST in flight) instead of raising: raised there, it
    would cut them short with a traceback."""
    target = TargetPlanhat(config=_config(tmp_path), validate_config=True)
    try:
        assert target.runtime is not None
        guard = target.runtime.guard
        with pytest.raises(StopRequested):
            target._on_signal(signal.SIGTERM, None)
        target.finishing = True
        target._on_signal(signal.SIGTERM, None)
        target._on_signal(signal.SIGINT, None)
        assert guard.signals == 3 and guard.signum == signal.SIGTERM
    finally:
        target.close()


def test_the_end_of_input_releases_the_runs_files_and_connections(tmp_path: Path) -> None:
    """In-process callers (the SDK's test runner among them) end a run with process_endofpipe:
    nothing may stay open until the garbage collector finds it."""
    target = TargetPlanhat(config=_config(tmp_path, dry_run=True), validate_config=True)
    lines = singer_lines([event(1), event(2, user=None)])  # the second one is dead-lettered
    target.process_lines(io.StringIO(lines))
    target.process_endofpipe()
    runtime = target.runtime
    assert runtime is not None and runtime.closed and target.finishing
    assert runtime.dead_letter._handle is None
    assert runtime.dry_run_file is not None and runtime.dry_run_file._handle.closed
    assert len((tmp_path / "dry-run.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 1
    target.close()  # the CLI closes again on its way out: nothing happens twice


def test_the_cli_has_the_sdk_flags_and_the_targets_own() -> None:
    with isolated_cli():
        command = TargetPlanhat.cli
    flags = {opt for param in command.params for opt in param.opts}
    assert {"--config", "--about", "--input"} <= flags
    assert {"--forget-delivered", "--migrate-ledger-from", "--show-held"} <= flags
    assert command.help == about.HELP


# --- the CLI entry in-process: exit codes, STATE ------------------------------------------------


def test_config_error_exits_2_with_one_line_and_no_state(tmp_path: Path) -> None:
    config = _config(tmp_path, api_url="ftp://analytics.planhat.com")
    result = run_in_process(config, singer_lines([event(1)]), tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Configuration error: api_url" in result.stderr
    assert TOKEN not in result.stderr


def test_dry_run_relays_state_only_when_asked(tmp_path: Path) -> None:
    data = singer_lines([event(n) for n in range(1, 6)], state_every=2)
    quiet = run_in_process(base_config(tmp_path, dry_run=True), data, tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.states == []
    (tmp_path / "dry-run.jsonl").unlink()
    config = base_config(tmp_path, dry_run=True, dry_run_writes_state=True)
    written = run_in_process(config, data, tmp_path)
    assert written.returncode == 0, written.stderr[-3000:]
    assert written.states[-1] == {"bookmarks": {"events": {"n": 5}}}
    assert len((tmp_path / "dry-run.jsonl").read_text().splitlines()) == 5


def test_invalid_input_exits_1_naming_the_line(tmp_path: Path) -> None:
    data = singer_lines([event(1)]) + "this is not JSON\n"
    result = run_in_process(base_config(tmp_path, dry_run=True), data, tmp_path)
    assert result.returncode == 1
    assert "Invalid input" in result.stderr and "line 4" in result.stderr
    assert "Traceback" not in result.stderr


# --- the SDK's standard target suite -----------------------------------------------------------
# The SDK's standard target suite, run against target-planhat in dry-run mode.
#
# ``streams: ["*"]`` sends every test stream through the whole pipeline (shapes, mapping, filters,
# validation, batch). The suite's records are not Amplitude events, so most of them are rejected for
# lack of an identifier and go to the dead-letter file: that is the pipeline working, and STATE must
# still be relayed. Nothing is left out of the suite. The SDK tests that expect an exception
# (record before schema, missing key property, invalid schema) see the SDK's own exception types,
# because the target only reformats them at the CLI boundary.

_WORK = Path(tempfile.mkdtemp(prefix="target-planhat-sdk-suite-"))

SDK_SUITE_CONFIG = {
    "dry_run": True,
    "streams": ["*"],
    "dry_run_path": str(_WORK / "dry-run.jsonl"),
    "dead_letter_path": str(_WORK / "rejected.jsonl"),
    "ledger_path": str(_WORK / "ledger.sqlite"),
    "mapping": {"externalId": "$.id", "action": "$.name", "date": "$.created_at"},
}

StandardTargetTests = get_target_test_class(TargetPlanhat, config=SDK_SUITE_CONFIG)


class TestTargetPlanhat(StandardTargetTests):  # type: ignore[misc, valid-type]
    """Standard Target Tests."""
