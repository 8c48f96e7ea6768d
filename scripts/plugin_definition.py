"""Write ``plugin/target-planhat.yml``, the Meltano Hub-format definition of this loader.

    .venv/bin/python scripts/plugin_definition.py          # rewrite the file from the schema
    .venv/bin/python scripts/plugin_definition.py --check  # exit 1 when the file is out of date

Every setting of the target's config schema (``TargetPlanhat.config_jsonschema``: this target's
own and the SDK's) is declared with a ``kind`` (so Meltano passes objects, arrays, booleans and
numbers as such, not as strings), a label, a description, its default as ``value`` and
``sensitive``. tests/unit/test_plugin_definition.py fails when the file and the schema disagree.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from target_planhat.target import TargetPlanhat

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = ROOT / "plugin" / "target-planhat.yml"

# Where the package is installed from. Change this line if the repository lives elsewhere (any pip
# requirement works: a git URL with @tag, a wheel, a local checkout path).
PIP_URL = "git+https://github.com/YOUR-ORG/target-planhat.git"

HEADER = """\
# Meltano plugin definition (Meltano Hub format) of the target-planhat loader.
# Generated from the target's config schema by scripts/plugin_definition.py; do not edit by hand.
#
#   meltano add --plugin-type loader target-planhat --from-ref plugin/target-planhat.yml
#
# pip_url is a placeholder (YOUR-ORG: there is no public git host): before installing, set it to
# where your copy lives (git+https://.../target-planhat.git@v0.1.0) or to a local checkout
# (-e /path/to/target-planhat). README, "Your own Meltano project".
"""

# Labels the generated ones ("Api Url") would get wrong.
LABELS = {
    "api_url": "API URL",
    "dry_run": "Dry Run",
    "max_event_bytes": "Max Event Bytes",
    "ledger_ttl_days": "Ledger TTL (days)",
    "ledger_url": "Ledger URL",
    "planhat_api_url": "Planhat API URL",
    "planhat_api_token": "Planhat API Token",
}

# Descriptions for settings whose schema has none.
DESCRIPTIONS = {
    "dry_run_path": "Where dry_run writes the activities, one per line, as they would be POSTed.",
    "ledger_path": "The delivery ledger (SQLite): ids Planhat acknowledged. Keep it between runs.",
    "ledger_ttl_days": "Ledger entries older than this many days are pruned.",
    "dead_letter_path": "Where rejected records go: stream, reason, record, activity, line, time.",
}


def _kind(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "options"
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if not types:
        return "object" if "anyOf" in schema or "oneOf" in schema else "string"
    first = types[0]
    return {
        "string": "string",
        "integer": "integer",
        "number": "decimal",
        "boolean": "boolean",
        "object": "object",
        "array": "array",
    }[first]


def _label(name: str, schema: dict[str, Any]) -> str:
    return LABELS.get(name) or schema.get("title") or name.replace("_", " ").title()


def _description(name: str, schema: dict[str, Any]) -> str:
    text = schema.get("description") or DESCRIPTIONS.get(name)
    if not text:
        raise SystemExit(f"setting {name!r} has no description: add one to the schema")
    return " ".join(str(text).split())


def setting(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """One setting in Hub form; ``kind``/``value``/``sensitive`` as the target's schema says."""
    entry: dict[str, Any] = {
        "name": name,
        "kind": _kind(schema),
        "label": _label(name, schema),
        "description": _description(name, schema),
        "sensitive": bool(schema.get("secret")),
    }
    if "default" in schema:
        entry["value"] = schema["default"]
    if entry["kind"] == "options":
        entry["options"] = [{"label": str(v), "value": v} for v in schema["enum"] if v is not None]
    return entry


def full_schema() -> dict[str, Any]:
    """The settings ``--about`` lists: the target's schema plus the SDK's built-in settings."""
    schema = copy.deepcopy(TargetPlanhat.config_jsonschema)
    TargetPlanhat.append_builtin_config(schema)
    return json.loads(json.dumps(schema))  # plain values (the SDK's defaults can be str enums)


def definition() -> dict[str, Any]:
    """The whole plugin definition, from the target's schema and its ``--about`` facts."""
    schema = full_schema()
    return {
        "name": "target-planhat",
        "namespace": "target_planhat",
        "variant": "target-planhat",
        "label": "Planhat",
        "description": "Amplitude events into Planhat as User Activities",
        "docs": PIP_URL.removeprefix("git+").removesuffix(".git") + "#readme",
        "repo": PIP_URL.removeprefix("git+").removesuffix(".git"),
        "pip_url": PIP_URL,
        "executable": "target-planhat",
        "capabilities": sorted(str(c) for c in TargetPlanhat.capabilities),
        "settings_group_validation": [["tenant_token"], ["dry_run"]],
        "settings": [setting(name, prop) for name, prop in schema["properties"].items()],
    }


def render() -> str:
    body = yaml.safe_dump(definition(), sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is up to date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DEFINITION.exists() or DEFINITION.read_text(encoding="utf-8") != text:
            sys.exit(f"{DEFINITION.relative_to(ROOT)} is out of date: run {Path(__file__).name}")
        return
    DEFINITION.parent.mkdir(exist_ok=True)
    DEFINITION.write_text(text, encoding="utf-8")
    print(f"wrote {DEFINITION.relative_to(ROOT)}: {len(definition()['settings'])} settings")


if __name__ == "__main__":
    main()
