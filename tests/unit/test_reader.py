"""reader.py: lines nested deeper than orjson reads give the same message on every Python."""

from __future__ import annotations

import json

import pytest

from target_planhat.reader import _MAX_READ_DEPTH, InputError, LineReader, _cut_below_depth


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, (list, dict)) and value:
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        depth += 1
    return depth


def test_cut_replaces_what_is_below_the_limit_and_keeps_strings():
    text = '{"a": [[[1]], [2]], "s": "[[[\\"{", "b": {"c": {"d": 1}}}'
    cut = json.loads(_cut_below_depth(text, 2))
    marker = "<nested deeper than 2 levels: cut on input>"
    assert cut == {"a": [marker, marker], "s": '[[["{', "b": {"c": marker}}


def test_cut_leaves_a_shallow_line_as_it_is():
    text = '{"type": "RECORD", "record": {"x": [1, {"y": "]"}]}}'
    assert _cut_below_depth(text, 10) == text


def test_cut_leaves_broken_json_broken():
    with pytest.raises(ValueError):
        json.loads(_cut_below_depth('{"a": [[[1]]', 2))


@pytest.mark.parametrize("levels", [1_100, 5_000, 100_000])
def test_a_record_deeper_than_orjson_reads_is_read_cut(levels):
    line = '{"type":"RECORD","stream":"s","record":{"x":' + "[" * levels + "]" * levels + "}}"
    reader = LineReader()
    message = reader.deserialize_json(line.encode())
    assert message["stream"] == "s"
    # Deeper than validation allows, so the record is rejected as too_deep, not sent.
    assert _depth(message["record"]["x"]) == _MAX_READ_DEPTH - 2


def test_a_broken_deep_line_is_an_input_error_naming_the_line():
    reader = LineReader()
    reader.line_number = 7
    with pytest.raises(InputError, match=r"^input line 7: not valid JSON"):
        reader.deserialize_json("[" * 5000)
