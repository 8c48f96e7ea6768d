"""plugin/target-planhat.yml, the Meltano plugin definition, says what the config schema says.

Meltano passes a setting it has no ``kind`` for as a string (``mapping: '{...}' is not of type
'object'``), so every schema setting must be declared, with the kind of its JSON type, its real
default and ``sensitive`` for secrets.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from target_planhat.target import TargetPlanhat

ROOT = Path(__file__).resolve().parents[2]
DEFINITION_FILE = ROOT / "plugin" / "target-planhat.yml"


def _full_schema() -> dict[str, Any]:
    """What ``--about`` lists: the target's settings and the SDK's built-in ones."""
    schema = copy.deepcopy(TargetPlanhat.config_jsonschema)
    TargetPlanhat.append_builtin_config(schema)
    return json.loads(json.dumps(schema))["properties"]


SCHEMA = _full_schema()
KIND_OF_TYPE = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}


def _definition() -> dict[str, Any]:
    return yaml.safe_load(DEFINITION_FILE.read_text(encoding="utf-8"))


def _settings() -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in _definition()["settings"]}


def test_every_schema_setting_is_declared_and_nothing_else():
    declared = _settings()
    missing = sorted(set(SCHEMA) - set(declared))
    assert not missing, (
        f"settings missing from {DEFINITION_FILE.name}: {missing}; "
        "run .venv/bin/python scripts/plugin_definition.py"
    )
    assert sorted(set(declared) - set(SCHEMA)) == []


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_each_setting_has_kind_label_description_default_and_sensitive(name):
    schema, entry = SCHEMA[name], _settings().get(name)
    assert entry is not None, f"{name} is not declared"
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if "enum" in schema:
        assert entry["kind"] == "options"
        assert [o["value"] for o in entry["options"]] == [v for v in schema["enum"] if v]
    elif types:
        assert entry["kind"] == KIND_OF_TYPE[types[0]]
    assert entry["label"].strip()
    assert entry["description"].strip()
    assert entry["sensitive"] is bool(schema.get("secret"))
    if "default" in schema:
        assert entry["value"] == schema["default"]
    else:
        assert "value" not in entry


def test_secrets_are_sensitive():
    settings = _settings()
    assert settings["tenant_token"]["sensitive"] is True
    assert "value" not in settings["tenant_token"]


def test_the_loader_runs_the_console_script_the_package_installs():
    definition = _definition()
    assert definition["executable"] == "target-planhat"
    assert definition["namespace"] == "target_planhat"
    assert definition["pip_url"].startswith("git+")
    assert set(definition["capabilities"]) == {str(c) for c in TargetPlanhat.capabilities}


def test_the_file_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location(
        "plugin_definition", ROOT / "scripts" / "plugin_definition.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DEFINITION_FILE.read_text(encoding="utf-8") == module.render(), (
        "plugin/target-planhat.yml is out of date: run python scripts/plugin_definition.py"
    )
