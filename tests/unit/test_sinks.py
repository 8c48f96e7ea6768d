"""``sinks``: the record validator (its fast accept never accepts what fastjsonschema refuses),
and the batch: rows and bytes per POST, a failed batch stops STATE, skipped and rejected records."""

from __future__ import annotations

import json
from pathlib import Path

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.errors import RecordSchemaError
from target_planhat.sinks import FastValidator
from tests.support.cli import Result, base_config, event, singer_lines
from tests.support.examples import examples
from tests.support.inprocess import run_in_process
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

TYPES = ["null", "string", "boolean", "integer", "number", "object", "array"]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
flat_schemas = st.dictionaries(
    st.sampled_from(["a", "b", "c", "event_time"]),
    st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True).map(
        lambda types: {"type": types}
    ),
    max_size=4,
).map(lambda properties: {"type": "object", "properties": properties})
records = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "event_time"]), values, max_size=5)


def _reference_accepts(schema: dict, record: dict) -> bool:
    try:
        fastjsonschema.compile(schema, formats={"date-time": r".*"})(dict(record))
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


@settings(max_examples=examples(400), deadline=None)
@given(flat_schemas, records)
def test_fast_accept_agrees_with_fastjsonschema(schema: dict, record: dict) -> None:
    validator = FastValidator(schema)
    try:
        validator.validate(record)
        accepted = True
    except RecordSchemaError:
        accepted = False
    assert accepted == _reference_accepts(schema, record)


def test_schemas_beyond_flat_types_use_the_full_validator() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    with pytest.raises(RecordSchemaError, match="must contain"):
        FastValidator(schema).validate({})


def test_error_names_the_problem_without_the_record() -> None:
    schema = {"type": "object", "properties": {"user_id": {"type": ["string", "null"]}}}
    with pytest.raises(RecordSchemaError) as caught:
        FastValidator(schema).validate({"user_id": 12345678})
    assert "user_id" in str(caught.value)
    assert "12345678" not in str(caught.value)


# --- the batch, driven through the SDK in-process against a receiver on 127.0.0.1 --------------


def _live(tmp_path: Path, planhat: PlanhatReceiver, **overrides: object) -> dict:
    return base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **overrides)


def _bookmarks(result: Result) -> list[int]:
    return [state["bookmarks"]["events"]["n"] for state in result.states]


def test_records_go_out_in_batches_of_batch_size_rows(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _live(tmp_path, planhat, batch_size_rows=3)
        result = run_in_process(config, singer_lines([event(n) for n in range(1, 8)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [len(r.activities) for r in planhat.activity_requests()] == [3, 3, 1]
    assert sorted(planhat.kept_counts()) == list(range(1, 8))
    assert _bookmarks(result) == [7]
    assert result.report["sent"] == 7


def test_a_batch_over_max_request_bytes_is_cut_before_it_is_full(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        # ~200 bytes an activity: 1200 bytes hold five, so no request carries ten.
        config = _live(
            tmp_path, planhat, batch_size_rows=10, max_request_bytes=1200, max_event_bytes=1000
        )
        result = run_in_process(config, singer_lines([event(n) for n in range(1, 21)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sizes = [len(r.body) for r in planhat.activity_requests()]
    assert max(sizes) <= 1200 and len(sizes) > 2
    assert sorted(planhat.kept_counts()) == list(range(1, 21))


def test_a_failed_batch_stops_state_from_advancing(tmp_path: Path) -> None:
    """Batches of 3, STATE every 3 records: the second POST fails (400), so no STATE may cover
    record 4 or later, and the run fails; the first batch's STATE is still written."""

    def second_fails(index: int, body: bytes) -> Reply:
        return Reply(status=400, body=b'{"error":"bad"}') if index == 1 else Reply()

    with PlanhatReceiver(second_fails) as planhat:
        config = _live(tmp_path, planhat, batch_size_rows=3)
        data = singer_lines([event(n) for n in range(1, 13)], state_every=3)
        result = run_in_process(config, data, tmp_path)
    assert result.returncode == 1
    assert _bookmarks(result) == [3]
    assert result.report["status"] == "failed"
    assert "400" in result.stderr


def test_records_of_a_stream_not_in_streams_are_counted_and_skipped(tmp_path: Path) -> None:
    config = base_config(tmp_path, dry_run=True, streams=["other"])
    result = run_in_process(config, singer_lines([event(1), event(2)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.report["skipped_streams"] == {"events": 2}
    assert result.report["dry_run_written"] == 0


def test_an_invalid_activity_goes_to_the_dead_letter_file_naming_its_line(tmp_path: Path) -> None:
    config = base_config(tmp_path, dry_run=True)
    result = run_in_process(config, singer_lines([event(1), event(2, user=None)]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [line["reason"] for line in lines] == ["no_identifier"]
    assert result.report["rejected_by"] == {"no_identifier": 1}
    assert result.report["dry_run_written"] == 1


def test_on_invalid_record_fail_stops_the_run_naming_the_record(tmp_path: Path) -> None:
    config = base_config(tmp_path, dry_run=True, on_invalid_record="fail")
    result = run_in_process(config, singer_lines([event(1), event(2, user=None)]), tmp_path)
    assert result.returncode == 1
    assert "input line 3" in result.stderr and "on_invalid_record=fail" in result.stderr
