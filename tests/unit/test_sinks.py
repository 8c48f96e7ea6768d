"""The sink's record validator: its fast accept never accepts what fastjsonschema refuses."""

from __future__ import annotations

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.errors import RecordSchemaError
from target_planhat.sinks import FastValidator
from tests.support.examples import examples

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
