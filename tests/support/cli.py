"""Run the real ``target-planhat`` console script as a subprocess, and build Singer input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The console script of the environment running the tests (the README's .venv in CI).
TARGET_BIN = str(Path(sys.executable).with_name("target-planhat"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[Any]:
        """Every stdout line parsed as JSON (stdout must hold nothing but STATE values)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def report(self) -> dict[str, Any] | None:
        """The last delivery-report line on stderr."""
        found = None
        for line in self.stderr.splitlines():
            if line.startswith('{"type":"planhat_delivery_report"'):
                found = json.loads(line)
        return found


def base_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A config whose every file lives under ``tmp_path``."""
    config: dict[str, Any] = {
        "dead_letter_path": str(tmp_path / "rejected.jsonl"),
        "dry_run_path": str(tmp_path / "dry-run.jsonl"),
        "ledger_path": str(tmp_path / "ledger.sqlite"),
        "report_path": str(tmp_path / "report.json"),
    }
    config.update(overrides)
    return config


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def run_target(
    config: dict[str, Any] | Path,
    input_data: str | bytes | Path,
    tmp_path: Path,
    *,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """Run ``target-planhat --config ...`` with ``input_data`` on stdin."""
    config_path = config if isinstance(config, Path) else write_config(tmp_path, config)
    if isinstance(input_data, Path):
        data = input_data.read_bytes()
    elif isinstance(input_data, str):
        data = input_data.encode("utf-8", "surrogatepass")
    else:
        data = input_data
    completed = subprocess.run(
        [TARGET_BIN, "--config", str(config_path), *(extra_args or [])],
        input=data,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
    )
    return Result(
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def spawn_target(
    config_path: Path, cwd: Path, *, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """Start ``target-planhat --config ...`` with pipes, for tests that feed input over time."""
    return subprocess.Popen(
        [TARGET_BIN, "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=cwd,
    )


def schema_message(stream: str = "events", key: str | None = "uuid") -> dict[str, Any]:
    """A SCHEMA for canonical Amplitude events (Airbyte's lower-case shape)."""
    obj = {"type": ["object", "null"]}
    text = {"type": ["string", "null"]}
    number = {"type": ["number", "null"]}
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {
            "type": "object",
            "properties": {
                "uuid": text,
                "$insert_id": text,
                "user_id": text,
                "device_id": text,
                "event_type": text,
                "event_time": {"type": ["string", "null"], "format": "date-time"},
                "server_upload_time": {"type": ["string", "null"], "format": "date-time"},
                "event_properties": obj,
                "user_properties": obj,
                "group_properties": obj,
                "groups": obj,
                "amplitude_id": number,
            },
        },
        "key_properties": [key] if key else [],
    }


def event(n: int, event_type: str = "Login", user: str | None = "user-1", **extra: Any) -> dict:
    """A canonical Amplitude event numbered ``n`` (ids derive from ``n``)."""
    record: dict[str, Any] = {
        "uuid": f"uuid-{n:06d}",
        "$insert_id": f"ins-{n:06d}",
        "user_id": user,
        "event_type": event_type,
        "event_time": f"2024-01-01T10:{(n // 60) % 60:02d}:{n % 60:02d}.000000Z",
        "server_upload_time": f"2024-01-01T11:{(n // 60) % 60:02d}:{n % 60:02d}.000000Z",
        "event_properties": {"n": n},
        "user_properties": {"plan": "pro"},
        "groups": {"company": ["acme-1"]},
    }
    record.update(extra)
    return record


def singer_lines(
    records: list[dict[str, Any]],
    stream: str = "events",
    state_every: int = 0,
    final_state: bool = True,
) -> str:
    """SCHEMA, the RECORDs, and a STATE ``{"bookmarks": {stream: {"n": i}}}`` every N records."""
    lines = [json.dumps(schema_message(stream))]
    for i, record in enumerate(records, 1):
        lines.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
        if state_every and i % state_every == 0:
            lines.append(json.dumps(state_message(stream, i)))
    if final_state and (not state_every or len(records) % state_every):
        lines.append(json.dumps(state_message(stream, len(records))))
    return "\n".join(lines) + "\n"


def state_message(stream: str, position: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"bookmarks": {stream: {"n": position}}}}
