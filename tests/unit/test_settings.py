"""compile_settings: which record fields the target normalises (only those its paths read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from target_planhat.settings import ConfigError, check_config, compile_settings
from target_planhat.target import TargetPlanhat
from tests.support.cli import base_config

DEFAULT_FIELDS = {
    "user_id",
    "groups",
    "event_type",
    "event_time",
    "event_properties",
    "user_properties",
    "group_properties",
    "$insert_id",
    "uuid",
}


def _fields(tmp_path: Path, **config: object) -> frozenset[str] | None:
    settings = compile_settings(base_config(tmp_path, dry_run=True, **config))
    return settings.canonicalize.fields


def test_default_config_reads_the_mapping_and_dedupe_fields(tmp_path: Path) -> None:
    assert _fields(tmp_path) == DEFAULT_FIELDS


@pytest.mark.parametrize(
    ("config", "added"),
    [
        (
            {
                "event_filters": {
                    "*": {"where": [{"path": "$.platform", "op": "eq", "value": "iOS"}]}
                }
            },
            {"platform"},
        ),
        ({"mapping": {"email": "$.user_properties.email", "weight": "$.data.w"}}, {"data"}),
        ({"mapping": {"info": {"os": "$.os_name", "plan": "$.user_properties.plan"}}}, {"os_name"}),
        ({"dedupe_key": ["$.event_id"]}, {"event_id"}),
    ],
)
def test_filters_mapping_and_dedupe_key_add_their_fields(tmp_path, config, added) -> None:
    fields = _fields(tmp_path, **config)
    assert fields is not None and added <= fields


@pytest.mark.parametrize(
    "config",
    [
        {"mapping": {"info": ["$..plan"]}},
        {"mapping": {"action": "$.*"}},
        {"event_filters": {"events": {"where": [{"path": "$..x", "op": "exists"}]}}},
        {"dedupe_key": ["$[?(@.uuid)].uuid"]},
    ],
)
def test_a_path_that_can_read_anything_keeps_every_field(tmp_path, config) -> None:
    assert _fields(tmp_path, **config) is None


METRIC = {"dimensionId": "logins", "externalId": "$.event_properties.account"}


def test_metric_paths_add_their_fields(tmp_path: Path) -> None:
    added = {**METRIC, "where": [{"path": "$.platform", "op": "exists"}]}
    assert _fields(tmp_path, metrics=[added]) == DEFAULT_FIELDS | {"platform"}


def test_metrics_need_the_rest_token_unless_dry_run(tmp_path: Path) -> None:
    from target_planhat.settings import ConfigError

    live = base_config(tmp_path, tenant_token="tok-1234", metrics=[METRIC])
    with pytest.raises(ConfigError, match=r"^metrics: planhat_api_token is required"):
        compile_settings(live)
    settings = compile_settings({**live, "planhat_api_token": "rest-5678"})
    assert settings.planhat_api_token == "rest-5678"
    assert len(settings.metrics) == 1
    assert compile_settings(base_config(tmp_path, dry_run=True, metrics=[METRIC])).metrics


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"metrics": [{**METRIC, "model": "Team"}]}, "metrics[0].model: 'Team'"),
        ({"metrics_path": "/dimensiondata"}, "metrics_path: must hold {tenant}"),
        ({"rollup": {"actions": []}}, "rollup.actions: required"),
    ],
)
def test_metric_and_rollup_config_errors_name_the_setting(tmp_path, config, message) -> None:
    from target_planhat.settings import ConfigError

    with pytest.raises(ConfigError) as error:
        compile_settings(base_config(tmp_path, dry_run=True, **config))
    assert str(error.value).startswith(message)


# --- check_config: unknown settings and strings where the schema wants JSON -----------------

_SCHEMA = {
    "properties": {
        "dry_run": {"type": ["boolean", "null"]},
        "mapping": {"type": ["object", "null"]},
        "streams": {"type": ["array", "null"]},
        "max_request_bytes": {"type": ["integer", "null"]},
        "request_timeout": {"type": ["number", "null"]},
        "report_path": {"type": ["string", "null"]},
        "anything": {},
    }
}


def test_check_config_names_the_closest_known_setting() -> None:
    with pytest.raises(ConfigError, match=r"^dryrun: unknown setting; did you mean `dry_run`\?$"):
        check_config({"dryrun": True}, _SCHEMA)


def test_check_config_points_to_about_when_nothing_is_close() -> None:
    with pytest.raises(ConfigError, match="zzz: unknown setting; see `target-planhat --about`"):
        check_config({"zzz": 1}, _SCHEMA)


def test_check_config_knows_every_setting_of_the_full_schema() -> None:
    """Derived from the schema: the SDK's settings and any setting added to SCHEMA are known."""
    schema = TargetPlanhat.full_config_schema()
    config = {name: None for name in schema["properties"]}
    assert check_config(config, schema) == config
    for sdk_setting in ("batch_size_rows", "stream_maps", "flattening_enabled", "load_method"):
        assert sdk_setting in schema["properties"]


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("dry_run", "true", True),
        ("dry_run", "false", False),
        ("dry_run", "null", None),
        ("mapping", '{"action": "$.x"}', {"action": "$.x"}),
        ("streams", '["a", "b"]', ["a", "b"]),
        ("max_request_bytes", "1000", 1000),
        ("max_request_bytes", "1000.0", 1000.0),
        ("request_timeout", "2.5", 2.5),
        ("request_timeout", "3", 3),
    ],
)
def test_check_config_parses_json_strings(key: str, text: str, value: object) -> None:
    assert check_config({key: text}, _SCHEMA) == {key: value}


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("dry_run", "yes"),
        ("dry_run", "1"),
        ("dry_run", ""),
        ("mapping", "{'a': 1}"),
        ("mapping", "[1]"),
        ("streams", "a,b"),
        ("max_request_bytes", "true"),
        ("max_request_bytes", "1.5"),
        ("request_timeout", "NaN"),
        ("request_timeout", "60s"),
    ],
)
def test_check_config_refuses_strings_that_are_not_the_wanted_json(key: str, text: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: the string "):
        check_config({key: text}, _SCHEMA)


def test_check_config_leaves_strings_alone_where_strings_are_wanted() -> None:
    config = {"report_path": "true", "anything": "{x"}
    assert check_config(config, _SCHEMA) == config


def test_check_config_shortens_a_long_value_in_its_message() -> None:
    with pytest.raises(ConfigError) as raised:
        check_config({"mapping": "x" * 500}, _SCHEMA)
    assert "x" * 61 not in str(raised.value)


def test_dry_run_writes_state_defaults_to_false(tmp_path: Path) -> None:
    assert compile_settings(base_config(tmp_path, dry_run=True)).dry_run_writes_state is False
    opted = compile_settings(base_config(tmp_path, dry_run=True, dry_run_writes_state=True))
    assert opted.dry_run_writes_state is True


def test_the_id_check_is_on_only_with_the_rest_token(tmp_path: Path) -> None:
    without = compile_settings(base_config(tmp_path, tenant_token="tok-1234"))
    assert without.on_unmatched is None  # nothing is checked
    with_token = compile_settings(
        base_config(tmp_path, tenant_token="tok-1234", planhat_api_token="rest-1234")
    )
    assert with_token.on_unmatched == "hold" and with_token.hold_days == 30
    assert with_token.planhat_page_sizes == {
        "companies": 5000,
        "endusers": 2000,
        "assets": 2000,
        "projects": 2000,
    }
    assert "assetExternalId" not in with_token.mapped_fields
    mapped = compile_settings(
        base_config(
            tmp_path,
            tenant_token="tok-1234",
            planhat_api_token="rest-1234",
            mapping={"assetExternalId": "$.groups.workspace", "companyExternalId": ""},
        )
    )
    assert "assetExternalId" in mapped.mapped_fields
    assert "companyExternalId" not in mapped.mapped_fields


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"on_unmatched": "send"}, "on_unmatched: 'send' needs planhat_api_token"),
        (
            {"planhat_api_token": "rest-1234", "on_unmatched": "later"},
            "on_unmatched: must be one of hold, send, dead_letter, fail",
        ),
        (
            {"planhat_api_token": "rest-1234", "planhat_api_url": "http://api.planhat.com"},
            "planhat_api_url: plain http:// is refused",
        ),
        (
            {"planhat_api_token": "rest-1234", "planhat_companies_page_size": 0},
            "planhat_companies_page_size: must be a positive number",
        ),
        (
            {"planhat_api_token": "rest-1234", "planhat_endusers_page_size": 2.5},
            "planhat_endusers_page_size: must be a whole number",
        ),
        ({"planhat_api_token": "rest-1234", "hold_days": -1}, "hold_days: must be a positive"),
        ({"planhat_api_token": 1234}, "planhat_api_token: must be a string"),
    ],
)
def test_id_check_config_errors_name_the_setting(tmp_path, config, message) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_settings(base_config(tmp_path, tenant_token="tok-1234", **config))
    assert str(caught.value).startswith(message)


def test_check_planhat_ids_false_turns_the_check_off(tmp_path: Path) -> None:
    config = base_config(
        tmp_path, tenant_token="tok-1234", planhat_api_token="rest-1234", check_planhat_ids=False
    )
    assert compile_settings(config).on_unmatched is None
    with pytest.raises(ConfigError, match=r"^on_unmatched: 'fail' needs planhat_api_token"):
        compile_settings({**config, "on_unmatched": "fail"})
