"""sample_config.json is a working, complete example of the target's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = ROOT / "sample_config.json"


def _sample() -> dict:
    return json.loads(SAMPLE_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sample_config_over_the_bundled_sample(in_tmp):
    """The example filters and property globs do what sample_config.json means them to do."""
    import subprocess
    import sys
    from fnmatch import fnmatchcase

    # Without planhat_api_token: with it, even a dry run lists Planhat's ids from its REST API,
    # which this test has no access to (tests/e2e/test_hold.py runs that against a stand-in).
    config = _sample() | {"dry_run": True, "planhat_api_token": ""}
    (in_tmp / "config.json").write_text(json.dumps(config), encoding="utf-8")
    sample = ROOT / "data" / "sample" / "amplitude-events.singer.jsonl"
    with sample.open("rb") as stdin:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from target_planhat.target import main; main()",
                "--config",
                "config.json",
            ],
            stdin=stdin,
            capture_output=True,
            check=False,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr.decode()[-4000:]

    records = [
        json.loads(line)["record"]
        for line in sample.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["type"] == "RECORD"
    ]
    rule = config["event_filters"]
    expected = [
        r
        for r in records
        if r["user_id"]
        and not any(fnmatchcase(r["event_type"], g) for g in rule["*"]["exclude"])
        and any(fnmatchcase(r["event_type"], g) for g in rule["event"]["include"])
    ]
    dry_run = in_tmp / config["dry_run_path"]
    lines = [json.loads(line) for line in dry_run.read_text(encoding="utf-8").splitlines()]
    activities = [line for line in lines if "dimensiondata" not in line]
    # The sample's metrics go to the dry-run file too, marked; its roll-up sends counts.
    assert any("dimensiondata" in line for line in lines)
    assert sum(a.get("count", 1) for a in activities) == len(expected) > 0
    assert len(activities) < len(expected)
    assert {a["action"] for a in activities} == {r["event_type"] for r in expected}
    assert not any(a["action"].startswith("[Amplitude]") for a in activities)
    for activity in activities:
        assert activity["companyExternalId"] in {"acme-1", "globex-7", "initech-3"}
        assert activity["email"].endswith(".example")
        assert not any(key.startswith("user.initial_") for key in activity.get("info", {}))
