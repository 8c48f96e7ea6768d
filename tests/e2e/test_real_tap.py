"""A real tap end to end: PyPI tap-amplitude-api 0.1.8 | target-planhat -> a loopback Planhat.

The tap runs in its own venv (``.venv-tap-amplitude-api`` in the repo root, created on first use:
its singer-python pins conflict with the Singer SDK) against ``AmplitudeExport``, a local
Export-API stand-in, and its stdout is piped into the real ``target-planhat`` process, which
sends to ``PlanhatReceiver``.

The tap asks for the last two days in two one-day windows whose boundary hour is in both
(Amplitude's ``end`` is inclusive), so an event uploaded in that hour reaches the target twice:
the target must still deliver it once.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from target_planhat.dates import to_iso_utc
from tests.support.amplitude_export import AmplitudeExport
from tests.support.cli import TARGET_BIN
from tests.support.receiver import TOKEN, PlanhatReceiver

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TAP_VENV = REPO / ".venv-tap-amplitude-api"
TAP_PYTHON = TAP_VENV / "bin" / "python"
LAUNCHER = REPO / "tests" / "support" / "run_tap_amplitude_api.py"
TAP_REQUIREMENT = "tap-amplitude-api==0.1.8"
RAW_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "generate_taps", REPO / "tests" / "data" / "taps" / "generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()


def _tap_ready() -> bool:
    if not TAP_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(TAP_PYTHON), "-c", "import tap_amplitude, singer; tap_amplitude.main"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def tap_python() -> Path:
    """The tap's venv, created and installed on first use, reused afterwards."""
    if not _tap_ready():
        subprocess.run([sys.executable, "-m", "venv", str(TAP_VENV)], check=True)
        install = subprocess.run(
            [str(TAP_PYTHON), "-m", "pip", "install", "--quiet", TAP_REQUIREMENT],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if install.returncode != 0 or not _tap_ready():
            pytest.skip(f"cannot install {TAP_REQUIREMENT}: {install.stderr[-2000:]}")
    return TAP_PYTHON


def _shifted_events(now: dt.datetime) -> tuple[list[dict[str, Any]], dt.datetime]:
    """The fixture events moved into the tap's look-back: 4 before, 1 in, 3 after the boundary."""
    boundary = (now - dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    slots = [
        boundary - dt.timedelta(hours=6),
        boundary - dt.timedelta(hours=5, minutes=30),
        boundary - dt.timedelta(hours=4),
        boundary - dt.timedelta(hours=3),
        boundary + dt.timedelta(minutes=10),  # the hour both windows ask for
        boundary + dt.timedelta(hours=2),
        boundary + dt.timedelta(hours=3),
        boundary + dt.timedelta(hours=4),
    ]
    events = []
    for line, slot in zip(GENERATOR.EVENTS, slots, strict=True):
        original = dt.datetime.strptime(line["event_time"], RAW_FORMAT)
        delta = slot.replace(microsecond=original.microsecond) - original
        moved = dict(line)
        for field in GENERATOR.TIME_FIELDS:
            if moved.get(field):
                moment = dt.datetime.strptime(moved[field], RAW_FORMAT) + delta
                moved[field] = moment.strftime(RAW_FORMAT)
        events.append(moved)
    return events, boundary


def _expected_activity(line: dict[str, Any]) -> dict[str, Any]:
    info = dict(line["event_properties"])
    info.update({f"user.{k}": v for k, v in line["user_properties"].items()})
    info.update({f"group.{k}": v for k, v in line["group_properties"].items()})
    activity: dict[str, Any] = {"externalId": line["user_id"]}
    company = line["groups"].get("company")
    if company:
        activity["companyExternalId"] = company[0]
    activity.update({"action": line["event_type"], "date": to_iso_utc(line["event_time"])})
    activity["info"] = info
    return activity


class _Pipe(threading.Thread):
    """Copy the tap's stdout into the target's stdin line by line, keeping every line."""

    def __init__(self, source: Any, sink: Any) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.sink = sink
        self.lines: list[bytes] = []

    def run(self) -> None:
        try:
            for line in self.source:
                self.lines.append(line)
                self.sink.write(line)
                self.sink.flush()
        finally:
            self.sink.close()


def test_tap_amplitude_api_to_planhat(tap_python, tmp_path):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    events, boundary = _shifted_events(now)
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(json.dumps({"auth_user": "amp-key", "auth_password": "amp-secret"}))
    target_config = tmp_path / "target.json"

    with AmplitudeExport(events) as amplitude, PlanhatReceiver() as planhat:
        target_config.write_text(
            json.dumps(
                {
                    "tenant_token": TOKEN,
                    "api_url": planhat.url,
                    "ledger_path": str(tmp_path / "ledger.sqlite"),
                    "dead_letter_path": str(tmp_path / "rejected.jsonl"),
                    "report_path": str(tmp_path / "report.json"),
                }
            )
        )
        tap = subprocess.Popen(
            [str(tap_python), str(LAUNCHER), "--config", str(tap_config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "TZ": "UTC", "AMPLITUDE_EXPORT_URL": amplitude.export_url},
            cwd=tmp_path,
        )
        target_out_path, target_err_path = tmp_path / "target.out", tmp_path / "target.err"
        with target_out_path.open("wb") as out, target_err_path.open("wb") as err:
            target = subprocess.Popen(
                [TARGET_BIN, "--config", str(target_config)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=tmp_path,
            )
        pipe = _Pipe(tap.stdout, target.stdin)
        pipe.start()
        tap_err = tap.stderr.read() if tap.stderr else b""
        assert tap.wait(timeout=120) == 0, tap_err.decode()[-3000:]
        pipe.join(timeout=60)
        assert target.wait(timeout=120) == 0, target_err_path.read_text()[-3000:]
        target_out = target_out_path.read_bytes()
        requests = list(amplitude.requests)
        delivered = planhat.kept_activities()

    # The tap asked for two one-day windows sharing the boundary hour, as its source says.
    assert [r.status for r in requests] == [200, 200]
    assert requests[0].end == requests[1].start
    assert requests[0].start == (boundary - dt.timedelta(days=1)).strftime("%Y%m%dT%H") or (
        requests[0].end != f"{boundary:%Y%m%dT%H}"  # the hour rolled over mid-test
    )

    messages = [json.loads(line) for line in pipe.lines]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    states = [m["value"] for m in messages if m["type"] == "STATE"]

    # What the real tap wrote is what the fixture generator says it writes, field for field.
    served = [e for r in requests for e in amplitude.served(*_hours(r))]
    assert records == [GENERATOR.tap_amplitude_api_record(line) for line in served]
    copies = Counter(r["uuid"] for r in records)
    if requests[0].end == f"{boundary:%Y%m%dT%H}":
        assert copies[events[4]["uuid"]] == 2  # the boundary-hour event came twice
    assert sum(copies.values()) == len(events) + (copies[events[4]["uuid"]] - 1)

    # Every identified event arrives exactly once, mapped by the default mapping.
    expected = [_expected_activity(line) for line in events if line["user_id"]]
    key = lambda a: (a["externalId"], a["action"], a["date"])  # noqa: E731
    assert Counter(map(key, delivered)) == Counter(map(key, expected))
    assert sorted(delivered, key=key) == sorted(expected, key=key)
    for activity in delivered:
        assert activity["date"].endswith("Z")

    # The anonymous event went to the dead-letter file, nowhere else.
    rejected = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejected} == {"no_identifier"}
    assert {r["record"]["device_id"] for r in rejected} == {"dev-0007-a1b2"}

    # The target's last STATE is the tap's last bookmark.
    target_states = [json.loads(line) for line in target_out.decode().splitlines() if line]
    assert states and target_states
    assert target_states[-1] == states[-1]
    assert set(states[-1]) == {"event"}
    last_upload = max(
        dt.datetime.strptime(e["server_upload_time"], RAW_FORMAT)
        for e in amplitude.served(*_hours(requests[-1]))
    )
    assert states[-1]["event"] == last_upload.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hours(request: Any) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime.strptime(request.start, "%Y%m%dT%H"),
        dt.datetime.strptime(request.end, "%Y%m%dT%H"),
    )
