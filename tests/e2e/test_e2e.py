"""End to end: the ``target-planhat`` CLI as a subprocess, real HTTP to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import (
    TARGET_BIN,
    base_config,
    event,
    run_target,
    singer_lines,
    spawn_target,
    write_config,
)
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

FIXTURE = Path(__file__).parents[1] / "data" / "e2e" / "mixed_events.singer.jsonl"

FILTERS = {
    "*": {"exclude": ["Heartbeat"]},
    "events": {"where": [{"path": "$.platform", "op": "ne", "value": "Test"}]},
}


def _activity(n: int, user: str, action: str, date: str, company: str, info: dict) -> dict:
    return {
        "externalId": user,
        "companyExternalId": company,
        "action": action,
        "date": date,
        "info": info,
    }


# Written out by hand from tests/data/e2e/mixed_events.singer.jsonl: record 4 and 9 are
# Heartbeats (excluded), 7 is anonymous (rejected: no identifier), 10 has platform Test (where).
EXPECTED = [
    _activity(
        1,
        "bob",
        "Login",
        "2024-05-02T01:11:01.001Z",
        "acme-2",
        {"path": "/p/1", "ms": 100, "user.plan": "pro", "group.tier": "gold"},
    ),
    _activity(
        2,
        "carol",
        "Page Viewed",
        "2024-05-03T02:12:02.002Z",
        "acme-1",
        {"path": "/p/2", "ms": 200, "user.plan": "enterprise"},
    ),
    _activity(
        3,
        "alice",
        "Report Exported",
        "2024-05-01T03:13:03.003Z",
        "acme-2",
        {"path": "/p/3", "ms": 300, "user.plan": "free", "group.tier": "gold"},
    ),
    _activity(
        5,
        "carol",
        "Seat Added",
        "2024-05-03T05:15:05.005Z",
        "acme-2",
        {"seats": 5, "user.plan": "enterprise", "group.tier": "gold"},
    ),
    _activity(
        6,
        "alice",
        "Page Viewed",
        "2024-05-01T06:10:06.006Z",
        "acme-1",
        {"path": "/p/6", "ms": 600, "user.plan": "free"},
    ),
    _activity(
        8,
        "carol",
        "Report Exported",
        "2024-05-03T08:12:08.008Z",
        "acme-1",
        {"path": "/p/8", "ms": 800, "user.plan": "enterprise"},
    ),
    _activity(
        11,
        "carol",
        "Seat Added",
        "2024-05-03T01:15:01.011Z",
        "acme-2",
        {"seats": 11, "user.plan": "enterprise", "group.tier": "gold"},
    ),
    _activity(
        12,
        "alice",
        "Login",
        "2024-05-01T02:10:02.012Z",
        "acme-1",
        {"path": "/p/12", "ms": 1200, "user.plan": "free"},
    ),
]


def http_config(tmp_path: Path, planhat: PlanhatReceiver, **overrides: object) -> dict:
    return base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **overrides)


def test_exact_bodies_with_filters_and_batches(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = http_config(tmp_path, planhat, event_filters=FILTERS, batch_size_rows=3)
        result = run_target(config, FIXTURE, tmp_path)
    assert result.returncode == 0, result.stderr
    requests = planhat.requests()
    assert all(r.path == f"/analytics/bulk/{TOKEN}" for r in requests)
    # batch_size_rows counts records read (the SDK's rule), so filtered ones fill batches too.
    bodies = [r.activities for r in requests]
    assert [a for body in bodies for a in body] == EXPECTED
    assert len(bodies) > 1
    assert all(len(body) <= 3 for body in bodies)
    assert result.states[-1] == {
        "bookmarks": {"events": {"server_upload_time": "2024-05-04T00:00:12.000000Z"}}
    }
    report = result.report
    assert report is not None
    assert report["sent"] == 8
    assert report["filtered_by"] == {
        "*: exclude Heartbeat": 2,
        "events: where $.platform ne 'Test'": 1,
    }
    assert report["rejected_by"] == {"no_identifier": 1}
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["record"]["$insert_id"]) for r in rejected] == [
        ("no_identifier", "ins-0007")
    ]


def test_body_is_a_json_array_with_content_type(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        result = run_target(http_config(tmp_path, planhat), singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr
    [request] = planhat.requests()
    assert request.body.startswith(b"[") and request.body.endswith(b"]")


def test_dry_run_writes_what_http_sends(tmp_path: Path) -> None:
    live_dir, dry_dir = tmp_path / "live", tmp_path / "dry"
    live_dir.mkdir()
    dry_dir.mkdir()
    with PlanhatReceiver() as planhat:
        config = http_config(live_dir, planhat, event_filters=FILTERS)
        live = run_target(config, FIXTURE, live_dir)
    assert live.returncode == 0, live.stderr
    # dry_run_writes_state: a dry run writes no STATE unless asked; asked, it writes the same.
    dry_config = base_config(
        dry_dir, dry_run=True, dry_run_writes_state=True, event_filters=FILTERS
    )
    dry = run_target(dry_config, FIXTURE, dry_dir)
    assert dry.returncode == 0, dry.stderr
    written = (dry_dir / "dry-run.jsonl").read_bytes().splitlines()
    sent = [body for r in planhat.requests() for body in _split_array(r.body)]
    assert written == sent  # the same bytes, not only the same objects
    assert [json.loads(line) for line in written] == EXPECTED
    assert dry.states == live.states


def _split_array(body: bytes) -> list[bytes]:
    """Each element of a JSON array body as its own compact bytes, as the target encoded it."""
    return [
        json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        for item in json.loads(body)
    ]


def test_state_only_after_acknowledgement(tmp_path: Path) -> None:
    """Each STATE line read from stdout covers only records Planhat already answered 2xx for."""

    def slow(index: int, body: bytes) -> Reply:
        return Reply(delay=0.2)

    records = [event(i, user=f"user-{i % 3}") for i in range(1, 31)]
    with PlanhatReceiver(slow) as planhat:
        config = write_config(tmp_path, http_config(tmp_path, planhat, batch_size_rows=5))
        process = spawn_target(config, tmp_path)
        assert process.stdin is not None and process.stdout is not None
        data = singer_lines(records, state_every=5).encode()
        stdin = process.stdin

        def feed() -> None:
            stdin.write(data)
            stdin.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        seen = []
        for line in process.stdout:
            covered = json.loads(line)["bookmarks"]["events"]["n"]
            acked = {a["info"]["n"] for a in planhat.acknowledged_activities()}
            assert set(range(1, covered + 1)) <= acked, (covered, sorted(acked))
            seen.append(covered)
        feeder.join()
        assert process.wait(timeout=60) == 0
    assert seen == [5, 10, 15, 20, 25, 30]  # one per full batch: checkpoints keep pace


def test_server_error_for_good_fails_without_state_past_it(tmp_path: Path) -> None:
    def first_ok_then_500(index: int, body: bytes) -> Reply:
        return Reply() if index == 0 else Reply(status=500, body=b'{"error": "boom"}')

    records = [event(i) for i in range(1, 21)]
    with PlanhatReceiver(first_ok_then_500) as planhat:
        config = http_config(tmp_path, planhat, batch_size_rows=5, max_retry_seconds=1)
        result = run_target(config, singer_lines(records, state_every=5), tmp_path)
    assert result.returncode == 1
    assert result.states == [{"bookmarks": {"events": {"n": 5}}}]
    assert "HTTP 500" in result.stderr and "max_retry_seconds" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(planhat.requests()) >= 2  # it did retry
    assert result.report is not None and result.report["status"] == "failed"


def test_client_error_fails_fast(tmp_path: Path) -> None:
    def bad_request(index: int, body: bytes) -> Reply:
        return Reply(status=400, body=b'{"message": "invalid tenant"}')

    with PlanhatReceiver(bad_request) as planhat:
        result = run_target(http_config(tmp_path, planhat), singer_lines([event(1)]), tmp_path)
    assert result.returncode == 1
    assert len(planhat.requests()) == 1
    assert "HTTP 400" in result.stderr and "invalid tenant" in result.stderr
    assert result.states == []


def test_unselected_streams_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = singer_lines([event(1)], stream="cohorts") + singer_lines([event(2)], stream="event")
    with PlanhatReceiver() as planhat:
        result = run_target(http_config(tmp_path, planhat), lines, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [a["info"]["n"] for a in planhat.kept_activities()] == [2]
    assert result.report is not None and result.report["skipped_streams"] == {"cohorts": 1}
    assert result.stderr.count("Stream 'cohorts' is not in `streams`") == 1


def test_config_from_environment(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        env = {
            "TARGET_PLANHAT_TENANT_TOKEN": TOKEN,
            "TARGET_PLANHAT_API_URL": planhat.url,
            "TARGET_PLANHAT_LEDGER_PATH": str(tmp_path / "l.sqlite"),
        }
        completed = subprocess.run(
            [TARGET_BIN, "--config=ENV"],
            input=singer_lines([event(1)]).encode(),
            capture_output=True,
            env={**os.environ, **env},
            cwd=tmp_path,
            timeout=60,
        )
    assert completed.returncode == 0, completed.stderr.decode()
    assert len(planhat.kept_activities()) == 1


@pytest.mark.parametrize("fmt", [[], ["--format=markdown"], ["--format=json"]])
def test_about(fmt: list[str]) -> None:
    completed = subprocess.run([TARGET_BIN, "--about", *fmt], capture_output=True, timeout=60)
    assert completed.returncode == 0
    text = completed.stdout.decode()
    for setting in ("tenant_token", "mapping", "event_filters", "max_request_bytes", "dry_run"):
        assert setting in text


def test_quiet_tap_still_gets_checkpoints(tmp_path: Path) -> None:
    """A tap that pauses (waiting on Amplitude's export) does not hold STATE or batches back."""
    with PlanhatReceiver() as planhat:
        config = write_config(tmp_path, http_config(tmp_path, planhat, checkpoint_seconds=0.5))
        process = spawn_target(config, tmp_path)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(singer_lines([event(i) for i in range(1, 8)]).encode())
        process.stdin.flush()
        started = time.monotonic()
        line = process.stdout.readline()  # stdin stays open: only the idle timer can do this
        waited = time.monotonic() - started
        assert json.loads(line) == {"bookmarks": {"events": {"n": 7}}}
        # Not the SDK's own 5-minute timer: any machine gets this far well within 2 minutes.
        assert waited < 120, waited
        assert sorted(a["info"]["n"] for a in planhat.acknowledged_activities()) == list(
            range(1, 8)
        )
        process.stdin.write(singer_lines([event(8)]).encode())
        process.stdin.close()
        assert process.stdout.read().splitlines() == [b'{"bookmarks": {"events": {"n": 1}}}']
        assert process.wait(timeout=30) == 0
