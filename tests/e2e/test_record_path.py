"""The shortened record path (``sdk_fast.DirectPath``) and the SDK's own.

Streams without stream maps skip the SDK's per-record copy and transform; streams with
``stream_maps`` or flattening take the SDK's full path. Both must give what the SDK would.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import base_config, event, run_target, schema_message, singer_lines


def _dry_run(tmp_path: Path, input_data: str, **config: object) -> tuple[list[dict], object]:
    result = run_target(base_config(tmp_path, dry_run=True, **config), input_data, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "dry-run.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], result  # one activity per line


def _actions(sent: list[dict]) -> list[str]:
    return [activity["action"] for activity in sent]


def test_stream_maps_still_apply(tmp_path: Path) -> None:
    records = [event(n, event_type=kind) for n, kind in enumerate(["Login", "Logout", "Login"])]
    maps = {"events": {"__filter__": "event_type != 'Logout'", "event_type": "event_type.upper()"}}
    sent, result = _dry_run(tmp_path, singer_lines(records), stream_maps=maps)
    assert _actions(sent) == ["LOGIN", "LOGIN"]
    assert result.report["received"] == 3


def test_stream_map_alias_still_applies(tmp_path: Path) -> None:
    maps = {"events": {"__alias__": "renamed"}}
    sent, _ = _dry_run(tmp_path, singer_lines([event(1)]), stream_maps=maps, streams=["renamed"])
    assert _actions(sent) == ["Login"]


def test_without_maps_records_lose_sdc_columns_as_in_the_sdk(tmp_path: Path) -> None:
    """`_sdc_*` metadata columns are dropped before validation, as the SDK's path does: a
    schema without them and ``additionalProperties: false`` still accepts the record."""
    schema = schema_message()
    schema["schema"]["additionalProperties"] = False
    record = event(1, _sdc_extracted_at="2024-01-01T00:00:00Z", _sdc_sequence=1)
    lines = [
        json.dumps(schema),
        json.dumps({"type": "RECORD", "stream": "events", "record": record}),
    ]
    sent, _ = _dry_run(tmp_path, "\n".join(lines) + "\n")
    assert _actions(sent) == ["Login"]


def test_without_maps_a_missing_key_property_fails_as_in_the_sdk(tmp_path: Path) -> None:
    record = event(1)
    del record["uuid"]
    lines = [
        json.dumps(schema_message(key="uuid")),
        json.dumps({"type": "RECORD", "stream": "events", "record": record}),
    ]
    result = run_target(base_config(tmp_path, dry_run=True), "\n".join(lines) + "\n", tmp_path)
    assert result.returncode == 1
    assert "key_properties" in result.stderr or "key properties" in result.stderr.lower()
    assert "Traceback" not in result.stderr
