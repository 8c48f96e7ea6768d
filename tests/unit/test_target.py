"""``target.TargetPlanhat``: config validation (errors naming the setting), the CLI hook, and
runs driven in-process through the SDK against a receiver on 127.0.0.1."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

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
    config = _sample()
    mapping = config["mapping"]
    assert mapping["companyExternalId"] == "$.groups.company"
    assert set(mapping) <= {
        "externalId",
        "email",
        "name",
        "companyExternalId",
        "assetExternalId",
        "projectExternalId",
        "action",
        "date",
        "weight",
        "count",
        "info",
    }
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
