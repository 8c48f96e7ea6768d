"""``--about`` and ``--help``: what the target does, and every setting with its real default.

The SDK's text form lists only names and types, and its markdown form prints ``None`` for every
built-in setting the SDK declares without a default (``batch_size_rows`` really is 10000): a
reader choosing settings needs the description and the value that applies when they set none.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from singer_sdk.about import AboutFormatter, AboutInfo
from singer_sdk.sinks import BatchSink

HELP = (
    "Send Amplitude events to Planhat as User Activities. Reads Singer messages (from any "
    "Amplitude tap) on stdin, maps each event with JSONPaths, filters and validates it, POSTs "
    "batches to Planhat's bulk analytics endpoint, and writes a STATE to stdout only once "
    "Planhat acknowledged every event before it. A ledger keeps a replay from sending twice; "
    "rejected events go to a dead-letter file; a delivery report goes to stderr. "
    "Use --about for every setting with its default."
)


def with_real_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with the default the SDK applies where it declares none.

    The SDK reads a missing boolean switch (``add_record_metadata``, ``flattening_enabled``)
    as false, and a missing ``batch_size_rows`` as its sink's ``MAX_SIZE_DEFAULT``.
    """
    filled = copy.deepcopy(dict(schema))
    for name, prop in filled.get("properties", {}).items():
        if "default" in prop:
            continue
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        if name == "batch_size_rows":
            prop["default"] = BatchSink.MAX_SIZE_DEFAULT
        elif "boolean" in types:
            prop["default"] = False
    return filled


def _type(prop: Mapping[str, Any]) -> str:
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else types
    named = [t for t in types if t != "null"] or ["any"]
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"] if v is not None)
    return " or ".join(named)


def _default(prop: Mapping[str, Any]) -> str:
    if "default" not in prop:
        return "none"
    return json.dumps(getattr(prop["default"], "value", prop["default"]))


def render(info: AboutInfo, output_format: str | None) -> str:
    """The SDK's ``--about`` output, with settings shown with descriptions and real defaults.

    The SDK's header (name, versions, capabilities) is kept as it renders it; only the
    settings part is replaced, for the text and markdown forms (JSON carries the whole schema).
    """
    info.settings = with_real_defaults(info.settings)
    fmt = output_format or "text"
    output = AboutFormatter.get_formatter(fmt).format_about(info)
    if fmt == "text":
        head, marker, _ = output.partition("\nSettings:\n")
        if marker:
            return head + "\n" + render_text_settings(info.env_var_prefix, info.settings)
    elif fmt == "markdown":
        head, marker, rest = output.partition("## Settings\n\n")
        if marker:
            _, _, tail = rest.partition("\n\n")
            table = render_markdown_settings(info.settings)
            return f"{head}{marker}{table}\n\n{tail}"
    return output


def render_text_settings(env_prefix: str, schema: Mapping[str, Any]) -> str:
    lines = ["Settings:"]
    for setting, prop in schema.get("properties", {}).items():
        lines.append(f"  - Name: {setting}")
        lines.append(f"    Type: {_type(prop)}")
        lines.append(f"    Default: {_default(prop)}")
        if prop.get("secret"):
            lines.append("    Secret: yes (never logged or written anywhere)")
        if prop.get("description"):
            lines.append(f"    Description: {' '.join(prop['description'].split())}")
        lines.append(f"    Environment Variable: {env_prefix}{setting.upper().replace('-', '_')}")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown_settings(schema: Mapping[str, Any]) -> str:
    rows = [
        "| Setting | Type | Default | Description |",
        "|:--------|:-----|:--------|:------------|",
    ]
    for setting, prop in schema.get("properties", {}).items():
        default = _default(prop)
        rows.append(
            f"| `{setting}` | {_cell(_type(prop))} | "
            f"{'none' if default == 'none' else '`' + _cell(default) + '`'} | "
            f"{_cell(prop.get('description', ''))} |"
        )
    return "\n".join(rows)
