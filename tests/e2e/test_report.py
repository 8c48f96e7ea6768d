"""The delivery report: one JSON line on stderr (and in ``report_path``) that accounts for every
record, logged at the end and every ``checkpoint_seconds`` while the run lasts; a WARNING when
records came in and none went out.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.cli import (
    base_config,
    event,
    run_target,
    schema_message,
    spawn_target,
    state_message,
    write_config,
)
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

REPORT_PREFIX = '{"type":"planhat_delivery_report"'


def lines(*messages: dict[str, Any]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def record(stream: str, rec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": rec}


def reports(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith(REPORT_PREFIX)]


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| WARNING " in line]


def mixed_input() -> str:
    events = [
        event(1, "Login"),
        event(2, "Login"),
        event(3, "Logout"),  # excluded by glob
        event(4, "Signup"),
        event(5, "Logout"),  # excluded by glob
        event(6, "Login", user=None),  # rejected: no identifier
        event(7, ""),  # rejected: no action
        event(8, "Login", user=None),  # rejected: no identifier
        event(1, "Login"),  # the same $insert_id as event 1: a duplicate
        event(200, "Login"),  # dropped by the where filter (n >= 100)
        event(9, "Login"),
    ]
    users = [{"id": "u1"}, {"id": "u2"}]
    return lines(
        schema_message("events"),
        {
            "type": "SCHEMA",
            "stream": "users",
            "schema": {"type": "object", "properties": {"id": {"type": "string"}}},
            "key_properties": [],
        },
        *[record("events", e) for e in events],
        *[record("users", u) for u in users],
        state_message("events", len(events)),
    )


MIXED_CONFIG = {
    "event_filters": {
        "events": {"exclude": ["Logout"]},
        "*": {"where": [{"path": "$.event_properties.n", "op": "lt", "value": 100}]},
    },
}


def test_report_accounts_for_every_record(tmp_path):
    def script(index: int, body: bytes) -> Reply:
        return Reply(status=503, headers={"Retry-After": "0"}) if index == 0 else Reply()

    with PlanhatReceiver(script) as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **MIXED_CONFIG)
        result = run_target(config, mixed_input(), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    [final] = [r for r in reports(result.stderr) if r["status"] != "running"]
    assert final["status"] == "succeeded"
    assert final["received"] == 13
    assert final["sent"] == 4
    assert final["filtered"] == 3
    assert final["filtered_by"] == {
        "events: exclude Logout": 2,
        "*: where $.event_properties.n lt 100": 1,
    }
    assert final["skipped_streams"] == {"users": 2}
    assert final["rejected"] == 3
    assert final["rejected_by"] == {"no_identifier": 2, "no_action": 1}
    assert final["duplicates_skipped"] == 1
    assert final["requests"] == 2
    assert final["retries"] == 1
    assert final["bytes"] == sum(len(r.body) for r in planhat.requests())
    assert final["top_actions"] == {"Login": 3, "Signup": 1}
    assert final["dry_run_written"] == 0
    assert final["states_written"] == 1
    # Every received record is accounted for exactly once.
    accounted = (
        final["sent"]
        + final["filtered"]
        + sum(final["skipped_streams"].values())
        + final["rejected"]
        + final["duplicates_skipped"]
    )
    assert accounted == final["received"]
    assert len(planhat.acknowledged_activities()) == 4

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == final, "report_path holds the same report as stderr"
    assert not [w for w in warnings(result.stderr) if "sent none" in w]


def test_report_is_the_last_line_of_stderr_and_one_line(tmp_path):
    result = run_target(base_config(tmp_path, dry_run=True), mixed_input(), tmp_path)
    assert result.returncode == 0
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith(REPORT_PREFIX)
    assert json.loads(last)["dry_run_written"] == 7
    assert result.stdout.count("planhat_delivery_report") == 0, "stdout is for STATE only"


def test_dry_run_report(tmp_path):
    config = base_config(tmp_path, dry_run=True, **MIXED_CONFIG)
    result = run_target(config, mixed_input(), tmp_path)
    report = result.report
    assert report["dry_run_written"] == 4
    assert report["sent"] == 0
    assert report["requests"] == 0
    assert report["top_actions"] == {"Login": 3, "Signup": 1}
    assert not [w for w in warnings(result.stderr) if "sent none" in w]


def _nothing_sent(tmp_path: Path, data: str, **overrides: Any) -> tuple[dict, list[str]]:
    config = base_config(tmp_path, dry_run=True, **overrides)
    result = run_target(config, data, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.report, [w for w in warnings(result.stderr) if "sent none" in w]


def test_warning_names_a_wrong_mapping(tmp_path):
    data = lines(schema_message(), *[record("events", event(n)) for n in range(4)])
    report, [warning] = _nothing_sent(tmp_path, data, mapping={"externalId": "$.userId"})
    assert report["received"] == 4
    assert "Received 4 records but sent none" in warning
    assert "top reason: rejected: no_identifier (4 records)" in warning


def test_warning_names_the_filter_that_dropped_everything(tmp_path):
    data = lines(
        schema_message(),
        *[record("events", event(n, "Logout")) for n in range(3)],
        record("events", event(9, "Login", user=None)),
    )
    _, [warning] = _nothing_sent(tmp_path, data, event_filters={"*": {"include": ["Login"]}})
    assert "top reason: filtered: *: include (3 records)" in warning


def test_warning_names_unselected_streams(tmp_path):
    data = lines(
        schema_message("amplitude_events"),
        *[record("amplitude_events", event(n)) for n in range(2)],
    )
    report, [warning] = _nothing_sent(tmp_path, data)
    assert report["skipped_streams"] == {"amplitude_events": 2}
    assert "top reason: stream not selected: amplitude_events (2 records)" in warning


def test_no_warning_for_a_replay_that_only_found_duplicates(tmp_path):
    data = lines(schema_message(), *[record("events", event(n)) for n in range(3)])
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        first = run_target(config, data, tmp_path)
        second = run_target(config, data, tmp_path)
    assert first.report["sent"] == 3
    assert second.report["sent"] == 0
    assert second.report["duplicates_skipped"] == 3
    assert second.report["requests"] == 0
    assert not [w for w in warnings(second.stderr) if "sent none" in w]
    assert len(planhat.kept_activities()) == 3


def test_no_warning_without_records(tmp_path):
    report, found = _nothing_sent(tmp_path, lines(schema_message(), state_message("events", 0)))
    assert report["received"] == 0
    assert found == []


def test_failed_run_writes_a_failed_report(tmp_path):
    with PlanhatReceiver(lambda i, b: Reply(status=400, body=b"bad")) as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        data = lines(schema_message(), *[record("events", event(n)) for n in range(3)])
        result = run_target(config, data, tmp_path)
    assert result.returncode == 1
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["status"] == "failed"
    assert saved["received"] == 3
    assert saved["sent"] == 0
    assert saved["requests"] == 1
    assert saved == result.report


def test_report_every_checkpoint_while_running(tmp_path):
    """A slow tap: the report is logged (and report_path rewritten) while the run goes on."""
    with PlanhatReceiver() as planhat:
        config = base_config(
            tmp_path, tenant_token=TOKEN, api_url=planhat.url, checkpoint_seconds=0.3
        )
        config_path = write_config(tmp_path, config)
        process = spawn_target(config_path, tmp_path, stderr=subprocess.PIPE)
        assert process.stdin is not None
        process.stdin.write(lines(schema_message()).encode())
        path = tmp_path / "report.json"
        running_seen = []  # the received count of each running report seen, stdin still open
        for n in range(4):
            process.stdin.write(lines(record("events", event(n))).encode())
            process.stdin.flush()
            # Wait (condition, not time) until a running report counts this record.
            deadline = time.monotonic() + 120  # ends a hung run only
            while time.monotonic() < deadline:
                try:
                    report = json.loads(path.read_text())
                except (OSError, ValueError):  # not written yet, or being rewritten
                    report = {"status": None, "received": 0}
                if report["status"] == "running" and report["received"] >= n + 1:
                    running_seen.append(report["received"])
                    break
                time.sleep(0.05)
        running = json.loads(path.read_text()) if path.exists() else None
        process.stdin.close()
        process.stdin = None  # closed: communicate() must not flush it
        _stdout, stderr_bytes = process.communicate(timeout=60)
    stderr = stderr_bytes.decode()
    assert process.returncode == 0, stderr[-3000:]
    assert running is not None and running["status"] == "running"
    assert running_seen == [1, 2, 3, 4], running_seen
    found = reports(stderr)
    statuses = [r["status"] for r in found]
    assert statuses.count("running") >= 2, statuses
    assert statuses[-1] == "succeeded"
    received = [r["received"] for r in found]
    assert received == sorted(received), "counts only grow"
    assert found[-1]["sent"] == 4
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "succeeded"
