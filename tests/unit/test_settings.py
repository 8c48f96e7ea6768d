"""compile_settings: which record fields the target normalises (only those its paths read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from target_planhat.settings import compile_settings
from tests.support.cli import base_config, event, run_target, singer_lines

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


def test_shape_problems_are_counted_for_fields_the_target_reads(tmp_path: Path) -> None:
    """An unparsable time nobody reads is not a problem; one the mapping reads is."""
    records = [
        event(1, processed_time="not a time", data="{not a bag"),
        event(2, event_time="not a time"),
    ]
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["shape_problems"] == {"unparsed_time_event_time": 1}
    assert result.report["rejected_by"] == {"bad_date": 1}
    assert result.report["dry_run_written"] == 1


def test_a_run_without_rejects_leaves_no_empty_dead_letter_file(tmp_path: Path) -> None:
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "dry-run.jsonl").exists()
    assert not (tmp_path / "rejected.jsonl").exists()


def test_a_run_with_a_reject_writes_the_dead_letter_file(tmp_path: Path) -> None:
    records = [event(1), event(2, user=None)]
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "rejected.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"reason":"no_identifier"' in lines[0]


def test_the_readme_recipe_counts_anonymous_events_instead_of_dead_lettering_them(
    tmp_path: Path,
) -> None:
    recipe = {"*": {"where": [{"path": "$.user_id", "op": "exists"}]}}
    records = [event(1), event(2, user=None)]
    config = base_config(tmp_path, dry_run=True, event_filters=recipe)
    result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["filtered_by"] == {"*: where $.user_id exists": 1}
    assert result.report["rejected"] == 0
    assert result.report["dry_run_written"] == 1
    assert not (tmp_path / "rejected.jsonl").exists()


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
