"""End to end: `bash scripts/demo.sh` replays the bundled sample through Meltano into a dry run.

The extractor is the real tap-amplitude-api, served data/sample/amplitude-export.jsonl by a local
Export-API stand-in; what it writes is data/sample/amplitude-events.singer.jsonl, which these
tests read for their expectations.

Slow (creates .venv-meltano and installs the plugins on first use): marked ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.meltano import MELTANO

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "amplitude-events.singer.jsonl"
DRY_RUN = ROOT / "output" / "planhat-dry-run.jsonl"
REJECTED = ROOT / "output" / "planhat-rejected.jsonl"
REPORT = ROOT / "output" / "planhat-report.json"
STATE_ID = "dev:tap-amplitude-sample-to-target-planhat"

pytestmark = pytest.mark.slow


def _messages(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _sample_expectations() -> tuple[int, int, str]:
    """(identified events, anonymous events, last bookmark) computed from the sample itself."""
    messages = _messages(SAMPLE)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    identified = sum(1 for r in records if r.get("user_id"))
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return identified, len(records) - identified, states[-1]["event"]


def _run_demo() -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TARGET_PLANHAT_"))}
    env["PYTHON"] = sys.executable  # the demo's venvs on the suite's Python, whatever python3 is
    return subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=15 * 60,
        check=False,
    )


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess:
    result = _run_demo()
    assert result.returncode == 0, (
        f"demo.sh exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}"
        f"\n--- stderr ---\n{result.stderr[-8000:]}"
    )
    return result


def test_sample_has_anonymous_and_identified_events():
    identified, anonymous, _ = _sample_expectations()
    assert identified >= 40
    assert anonymous >= 3


def test_demo_writes_one_activity_per_identified_event(demo):
    identified, _, _ = _sample_expectations()
    lines = DRY_RUN.read_text(encoding="utf-8").splitlines()
    activities = [json.loads(line) for line in lines]  # one JSON object per line
    assert all(isinstance(a, dict) for a in activities)
    assert len(activities) == identified
    for activity in activities:
        assert activity.get("externalId"), activity
        assert activity.get("action"), activity
        assert isinstance(activity.get("date"), str) and activity["date"].endswith("Z"), activity


def test_demo_activities_carry_company_and_parsed_properties(demo):
    sample = {
        r["uuid"]: r for r in (m["record"] for m in _messages(SAMPLE) if m["type"] == "RECORD")
    }
    activities = _messages(DRY_RUN)
    users = {r["user_id"] for r in sample.values() if r.get("user_id")}
    assert {a["externalId"] for a in activities} == users
    actions = {r["event_type"] for r in sample.values() if r.get("user_id")}
    assert {a["action"] for a in activities} == actions
    # groups arrive as the Python-repr string "{'company': ['acme-1']}": the target parses it.
    assert all(a.get("companyExternalId") for a in activities)
    assert {a["companyExternalId"] for a in activities} <= {"acme-1", "globex-7", "initech-3"}
    exports = [a for a in activities if a["action"] == "Report Exported"]
    assert exports and all(isinstance(a.get("info"), dict) for a in exports)
    assert all("format" in a["info"] for a in exports), exports[0]


def test_demo_rejects_the_anonymous_events(demo):
    _, anonymous, _ = _sample_expectations()
    assert REJECTED.exists(), "no dead-letter file"
    rejected = _messages(REJECTED)
    assert len(rejected) == anonymous


def test_demo_prints_a_summary(demo):
    identified, _, _ = _sample_expectations()
    assert f"wrote {identified} Planhat activities" in demo.stdout
    assert "output/planhat-dry-run.jsonl" in demo.stdout
    assert "first activity:" in demo.stdout


def test_meltano_recorded_the_last_bookmark(demo):
    _, _, last_bookmark = _sample_expectations()
    result = subprocess.run(
        [str(MELTANO), "--environment", "dev", "state", "get", STATE_ID],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads(result.stdout)
    assert state["singer_state"] == {"event": last_bookmark}


def test_second_demo_run_still_produces_the_file(demo):
    identified, _, _ = _sample_expectations()
    again = _run_demo()
    assert again.returncode == 0, again.stderr[-8000:]
    assert len(_messages(DRY_RUN)) == identified


def _old_python() -> str | None:
    """A Python older than pyproject's 3.10 on this machine (pyenv), if any."""
    for version in ("3.9", "3.8", "3.7"):
        found = subprocess.run(
            ["bash", "-c", f'ls -d "$(pyenv root)"/versions/{version}.*/bin/python{version}'],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if found:
            return found[-1]
    return None


@pytest.mark.parametrize("script", ["scripts/demo.sh", "scripts/test.sh"])
def test_scripts_say_plainly_when_the_interpreter_is_too_old(script):
    old = _old_python()
    if old is None:
        pytest.skip("no Python older than 3.10 on this machine (pyenv) to try")
    result = subprocess.run(
        ["bash", script],
        cwd=ROOT,
        env={**os.environ, "PYTHON": old},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    name = Path(script).name.removesuffix(".sh") if script.endswith("demo.sh") else "test.sh"
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{name}: FAILED: {old} is Python 3."), result.stderr
    assert "needs Python 3.10 or newer" in first
