"""``--about`` shows every setting's description and the default that really applies."""

from __future__ import annotations

import json

from singer_sdk.sinks import BatchSink

from target_planhat.about import render, with_real_defaults
from target_planhat.target import TargetPlanhat


def _about(fmt: str | None) -> str:
    return render(TargetPlanhat._get_about_info(), fmt)


def test_sdk_settings_get_the_default_the_sdk_applies() -> None:
    schema = with_real_defaults(TargetPlanhat.full_config_schema())
    props = schema["properties"]
    assert props["batch_size_rows"]["default"] == BatchSink.MAX_SIZE_DEFAULT == 10000
    assert props["add_record_metadata"]["default"] is False
    assert props["flattening_enabled"]["default"] is False
    assert props["validate_records"]["default"] is True
    assert "default" not in props["stream_maps"]
    assert props["dry_run"]["default"] is False


def test_text_shows_description_and_default_of_every_setting() -> None:
    text = _about("text")
    settings = TargetPlanhat.full_config_schema()["properties"]
    blocks = text.split("\n  - Name: ")[1:]
    assert [block.split("\n")[0] for block in blocks] == list(settings)
    for block in blocks:
        assert "\n    Default: " in block
    assert "  - Name: batch_size_rows\n    Type: integer\n    Default: 10000\n" in text
    assert "  - Name: dry_run_writes_state\n    Type: boolean\n    Default: false\n" in text
    # Every one of this target's settings says what it is for.
    own = [b for b in blocks if b.split("\n")[0] in TargetPlanhat.config_jsonschema["properties"]]
    for block in own:
        assert "\n    Description: " in block, block
    assert "Version: " in text and "Capabilities:" in text


def test_markdown_shows_real_defaults_not_none() -> None:
    markdown = _about("markdown")
    assert "| `batch_size_rows` | integer | `10000` |" in markdown
    assert '| `api_url` | string | `"https://analytics.planhat.com"` |' in markdown
    assert "| `tenant_token` | string | none |" in markdown
    assert "| None |" not in markdown
    assert "## Capabilities" in markdown and "--about" in markdown


def test_json_keeps_the_whole_schema_with_real_defaults() -> None:
    data = json.loads(_about("json"))
    assert data["settings"]["properties"]["batch_size_rows"]["default"] == 10000
