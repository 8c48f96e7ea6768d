"""The bad-input corpus (``tests/data/bad``) through the real CLI, against a loopback Planhat.

Every case in ``cases.json`` is run as a subprocess; the outcome it declares is asserted, and so
is what no case may do: print a traceback, leak the token, write a STATE past the bad line, or
send the bad record. Rejected records are run under each ``on_invalid_record`` policy.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from target_planhat.mapping import ActivityMapper
from target_planhat.shapes import to_canonical
from target_planhat.validate import encode_activity
from tests.support.cli import (
    Result,
    base_config,
    event,
    run_target,
    schema_message,
    state_message,
)
from tests.support.receiver import TOKEN, PlanhatReceiver

BAD = Path(__file__).parents[1] / "data" / "bad"
TABLE = json.loads((BAD / "cases.json").read_text())["cases"]
CASES = {case["name"]: case for case in TABLE}
FIFTY_MB = 50_000_000
DEAD_LETTER_FIELDS = {"time", "stream", "reason", "detail", "input_line", "record", "activity"}


# --- inputs -----------------------------------------------------------------------------------


def _dumps(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _layout(bad: bytes) -> bytes:
    """The corpus layout (make_corpus.py): the bad line is line 4, between good events 1 and 3."""
    lines = [
        _dumps(schema_message()),
        _dumps({"type": "RECORD", "stream": "events", "record": event(1)}),
        _dumps(state_message("events", 1)),
        bad,
        _dumps(state_message("events", 2)),
        _dumps({"type": "RECORD", "stream": "events", "record": event(3)}),
        _dumps(state_message("events", 3)),
    ]
    return b"\n".join(lines) + b"\n"


def _padded_event(total_bytes: int) -> dict[str, Any]:
    """Event 2 whose activity, encoded as the target sends it, is exactly ``total_bytes`` long."""

    def size(pad: str) -> int:
        record = event(2, event_properties={"pad": pad})
        return len(encode_activity(ActivityMapper().build(to_canonical(record)), 10**9))

    base = size("")
    record = event(2, event_properties={"pad": "p" * (total_bytes - base)})
    assert size(record["event_properties"]["pad"]) == total_bytes
    return record


def _generate(case: dict[str, Any]) -> bytes:
    kind = case["generate"]
    if kind == "event_of_bytes":
        record = _padded_event(case["bytes"])
        return _layout(_dumps({"type": "RECORD", "stream": "events", "record": record}))
    if kind == "string_50mb":
        record = event(2, event_properties={"blob": "x" * FIFTY_MB})
        return _layout(_dumps({"type": "RECORD", "stream": "events", "record": record}))
    if kind == "not_json_50mb":  # an unterminated 50 MB string: the message must not echo it
        return _layout(b'{"type":"RECORD","stream":"events","record":{"blob":"' + b"x" * FIFTY_MB)
    raise AssertionError(f"unknown generator {kind}")


def case_input(case: dict[str, Any]) -> bytes:
    return _generate(case) if "generate" in case else (BAD / case["file"]).read_bytes()


# --- running ----------------------------------------------------------------------------------


def run_case(
    case: dict[str, Any], tmp_path: Path, policy: str = "dead_letter"
) -> tuple[Result, PlanhatReceiver]:
    with PlanhatReceiver() as planhat:
        config = base_config(
            tmp_path,
            tenant_token=TOKEN,
            api_url=planhat.url,
            on_invalid_record=policy,
            **case.get("config", {}),
        )
        result = run_target(config, case_input(case), tmp_path)
    return result, planhat


def sent_numbers(planhat: PlanhatReceiver) -> list[int]:
    """``event_properties.n`` of every activity Planhat kept (the corpus' events carry it)."""
    return [a.get("info", {}).get("n") for a in planhat.kept_activities()]


def state_positions(result: Result) -> list[int]:
    return [state["bookmarks"]["events"]["n"] for state in result.states]


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "rejected.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def assert_never(result: Result, tmp_path: Path) -> None:
    """What no run may do, whatever its input."""
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr and TOKEN not in result.stdout
    for path in tmp_path.iterdir():
        if path.is_file() and path.suffix in (".jsonl", ".json") and path.name != "config.json":
            assert TOKEN.encode() not in path.read_bytes(), path.name
    # A huge bad line is described, never echoed.
    assert len(result.stderr) < 100_000


def bad_line(case: dict[str, Any]) -> int:
    return case.get("line", 4)


def _params(outcomes: tuple[str, ...]) -> list[Any]:
    params = []
    for case in TABLE:
        if case["outcome"] not in outcomes:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else []
        params.append(pytest.param(case, id=case["name"], marks=marks))
    return params


# --- rejected records, under each policy ------------------------------------------------------


@pytest.mark.parametrize("case", _params(("rejected",)))
def test_rejected_record_goes_to_the_dead_letter_file(case, tmp_path):
    result, planhat = run_case(case, tmp_path, "dead_letter")
    assert_never(result, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]

    report = result.report
    assert report is not None and report["status"] == "succeeded"
    assert report["received"] == 3
    assert report["sent"] == 2
    assert report["rejected_by"] == {case["reason"]: 1}
    assert sorted(sent_numbers(planhat)) == [1, 3], "the bad record was sent, or a good one lost"
    assert state_positions(result)[-1] == 3, "the run must go on past a rejected record"

    [entry] = dead_letters(tmp_path)
    assert set(entry) == DEAD_LETTER_FIELDS
    assert entry["stream"] == "events"
    assert entry["reason"] == case["reason"]
    assert entry["detail"]
    assert entry["input_line"] == bad_line(case)
    assert dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).tzinfo is not None
    record, activity = entry["record"], entry["activity"]
    assert isinstance(activity, dict), "the activity was built, so it is kept"
    if record.get("truncated"):
        # A huge record is kept as an excerpt: the dead-letter file must stay readable.
        assert case["reason"] == "too_large"
        assert record["original_bytes"] > 1_000_000
        assert record["excerpt"].startswith('{"uuid":"uuid-000002"')
        assert activity["truncated"] is True
        assert (tmp_path / "rejected.jsonl").stat().st_size < 300_000
    else:
        assert record["uuid"] == "uuid-000002", "the record as received"


@pytest.mark.parametrize("case", _params(("rejected",)))
def test_rejected_record_is_skipped(case, tmp_path):
    result, planhat = run_case(case, tmp_path, "skip")
    assert_never(result, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["rejected_by"] == {case["reason"]: 1}
    assert result.report["sent"] == 2
    assert sorted(sent_numbers(planhat)) == [1, 3]
    assert dead_letters(tmp_path) == []
    assert state_positions(result)[-1] == 3


@pytest.mark.parametrize("case", _params(("rejected",)))
def test_rejected_record_fails_the_run(case, tmp_path):
    result, planhat = run_case(case, tmp_path, "fail")
    assert_never(result, tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "| ERROR " in line]
    message = errors[-1]
    # One line naming the position, the record, the reason and the policy.
    assert f"input line {bad_line(case)}" in message
    assert "ins-000002" in message
    assert case["reason"] in message
    assert "on_invalid_record=fail" in message
    assert all(position < 2 for position in state_positions(result)), "STATE past the bad record"
    assert not {2, 3} & set(sent_numbers(planhat)), "sent the bad record or what came after"
    assert result.report["status"] == "failed"
    assert result.report["rejected_by"] == {case["reason"]: 1}
    assert dead_letters(tmp_path) == []


# --- input the Singer spec does not allow -----------------------------------------------------


@pytest.mark.parametrize("case", _params(("input_error",)))
def test_invalid_input_stops_the_run_naming_the_line(case, tmp_path):
    result, planhat = run_case(case, tmp_path)
    assert_never(result, tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "| ERROR " in line]
    assert errors, result.stderr[-2000:]
    message = errors[-1]
    assert f"Invalid input: input line {bad_line(case)}: " in message
    assert case["message"] in message
    assert len(message) < 1000
    limit = bad_line(case) - 2  # the STATE just before the bad line covers event 1 at most
    assert all(position <= max(limit, 0) for position in state_positions(result))
    assert not {2, 3} & set(sent_numbers(planhat))
    assert result.report["status"] == "failed"


# --- accepted, odd-looking input --------------------------------------------------------------


@pytest.mark.parametrize("case", _params(("sent",)))
def test_accepted_input_is_sent(case, tmp_path):
    result, planhat = run_case(case, tmp_path)
    assert_never(result, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["rejected"] == 0
    assert result.report["sent"] == 3
    assert sorted(n for n in sent_numbers(planhat) if n is not None) == [1, 3]
    assert len(planhat.kept_activities()) == 3
    assert dead_letters(tmp_path) == []
    if case.get("generate") == "event_of_bytes":
        sizes = [
            len(orjson.dumps(a, option=orjson.OPT_NON_STR_KEYS)) for a in planhat.kept_activities()
        ]
        assert max(sizes) == case["bytes"], "the largest allowed event goes through whole"


@pytest.mark.parametrize("case", _params(("skipped_stream",)))
def test_undecodable_stream_name_is_skipped_and_reported(case, tmp_path):
    result, planhat = run_case(case, tmp_path)
    assert_never(result, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["skipped_streams"] == {"us\udcffers": 1}
    assert sorted(sent_numbers(planhat)) == [1, 3]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["skipped_streams"] == {"us\udcffers": 1}


# --- what a dead-letter line keeps of records JSON cannot hold --------------------------------


def _dead_letter_record(name: str, tmp_path: Path) -> dict[str, Any]:
    result, _ = run_case(CASES[name], tmp_path)
    assert result.returncode == 0
    [entry] = dead_letters(tmp_path)
    return entry


def test_dead_letter_keeps_lone_surrogates_as_escapes(tmp_path):
    entry = _dead_letter_record("lone_surrogate", tmp_path)
    assert entry["record"]["event_properties"] == {"name": "ab\ud800cd"}
    assert entry["activity"]["info"]["name"] == "ab\ud800cd"
    raw = (tmp_path / "rejected.jsonl").read_bytes()
    assert b"\\ud800" in raw
    raw.decode("utf-8")  # the file itself is valid UTF-8


def test_dead_letter_keeps_invalid_utf8_as_escaped_bytes(tmp_path):
    entry = _dead_letter_record("invalid_utf8_bytes", tmp_path)
    # Invalid bytes are read as surrogate escapes (U+DC80 + byte): the bytes can be recovered.
    assert entry["record"]["event_type"] == "Log\udcff\udcfein"
    assert entry["record"]["event_type"].encode("utf-8", "surrogateescape") == b"Log\xff\xfein"


def test_dead_letter_keeps_deep_records_clipped(tmp_path):
    entry = _dead_letter_record("nested_1000_levels", tmp_path)
    assert entry["reason"] == "too_deep"
    assert "nested deeper than" in json.dumps(entry["record"]["event_properties"])


def test_dead_letter_of_nan_names_the_field(tmp_path):
    entry = _dead_letter_record("nan", tmp_path)
    assert "info.score" in entry["detail"]
    # JSON has no NaN: the dead-letter file stays strict JSON, the value shows as null.
    assert entry["record"]["event_properties"] == {"score": None}


def test_several_bad_records_each_get_their_line(tmp_path):
    records = [
        event(1),
        event(2, user=None),
        event(3, event_type=""),
        event(4),
        event(5, event_time="yesterday-ish"),
    ]
    lines = [_dumps(schema_message())]
    lines += [_dumps({"type": "RECORD", "stream": "events", "record": r}) for r in records]
    lines.append(_dumps(state_message("events", 5)))
    plain = json.loads(lines[0])
    plain["schema"]["properties"]["event_time"] = {"type": ["string", "null"]}
    lines[0] = _dumps(plain)
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        result = run_target(config, b"\n".join(lines) + b"\n", tmp_path)
    assert_never(result, tmp_path)
    assert result.returncode == 0
    entries = dead_letters(tmp_path)
    assert [(e["input_line"], e["reason"]) for e in entries] == [
        (3, "no_identifier"),
        (4, "no_action"),
        (6, "bad_date"),
    ]
    assert result.report["rejected_by"] == {"no_identifier": 1, "no_action": 1, "bad_date": 1}
    assert sorted(sent_numbers(planhat)) == [1, 4]
    assert result.states == [{"bookmarks": {"events": {"n": 5}}}]
