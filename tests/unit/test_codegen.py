"""The one code generator: no config or record text ever becomes source.

Tested here once, for every user of the generator (shapes' compiled plans, the mapping's
``build``): hostile text as keys, field names, prefixes, paths and values goes through the
generated code and gives what the plain version gives, and nothing it holds is ever run. Only
codegen.py may compile source at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from target_planhat import shapes
from target_planhat.codegen import Source, SourceError
from target_planhat.mapping import ActivityMapper
from target_planhat.paths import CompiledPath, PathError
from tests.support.examples import examples
from tests.support.mapping_reference import ReferenceMapper

PACKAGE = Path(shapes.__file__).resolve().parent

# Text that would do harm if it ever became source.
HOSTILE = [
    "x'] = 1; import os; os._exit(3) #",
    'x"); __import__("os")._exit(3); ("',
    "__import__('os')._exit(3)",
    "exit",
    "v0",
    "_c1",
    "out",
    "record",
    "problems",
    "\\",
    "\n    return None\n",
    "# comment",
    "{",
    "}",
    "{v}",
    "{n}",
    "a\x00b",
    "Zürich ✓",
    "",
]

_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))
_kinds = st.sampled_from([None, shapes._time, shapes._bag, shapes._id])
_values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=12),
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.just("{'a': __import__('os')._exit(3)}"),
)


@settings(max_examples=examples(300), deadline=None)
@example(steps=[(key, key, None) for key in HOSTILE], values=HOSTILE, aliases=[])
@given(
    steps=st.lists(st.tuples(_text, _text, _kinds), max_size=8, unique_by=lambda step: step[0]),
    values=st.lists(_values, min_size=8, max_size=8),
    aliases=st.lists(st.integers(0, 7), max_size=2),
)
def test_hostile_keys_names_and_values_never_become_source(steps, values, aliases) -> None:
    """A compiled plan gives what the plain loop gives, whatever text its keys, field names
    and values hold (and the process is still here: nothing in them ran)."""
    record = {key: values[i] for i, (key, _name, _kind) in enumerate(steps)}
    alias_keys = tuple(steps[i][0] for i in aliases if i < len(steps))
    compiled = shapes._compiled(steps, alias_keys)
    plain = shapes._runner(steps, alias_keys)
    seen: list[str] = []
    expected: list[str] = []
    assert repr(compiled(record, seen.append)) == repr(plain(record, expected.append))
    assert seen == expected


def test_hostile_fields_through_a_canonicalizer() -> None:
    """The same, end to end: selected fields and record keys made of hostile text."""
    canonicalize = shapes.Canonicalizer([*(key.lower() for key in HOSTILE), "user_id"])
    record = {key: key for key in HOSTILE} | {"USER_ID": "u"}
    for _ in range(shapes.Canonicalizer.COMPILE_AFTER + 2):
        assert canonicalize(record) == {key.lower(): key for key in HOSTILE} | {"user_id": "u"}
    assert canonicalize._last.run.__code__.co_filename == "<generated run>"


def _quoted_path(key: str) -> str | None:
    """``$['key']`` (or with double quotes) for a key jsonpath-ng reads back as it is."""
    for quote in ("'", '"'):
        if quote not in key and "\\" not in key:
            expression = f"$[{quote}{key}{quote}]"
            try:
                if CompiledPath(expression).plain_steps == (key,):
                    return expression
            except PathError:
                return None
    return None


_keys = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=8))


@settings(max_examples=examples(200), deadline=None)
@example(keys=HOSTILE, prefix="x'] = 1 #", values=HOSTILE, as_object=True)
@example(keys=HOSTILE, prefix="\n", values=HOSTILE, as_object=False)
@given(
    keys=st.lists(_keys, min_size=1, max_size=6, unique=True),
    prefix=_keys,
    values=st.lists(_values, min_size=6, max_size=6),
    as_object=st.booleans(),
)
def test_hostile_settings_never_become_mapping_source(keys, prefix, values, as_object) -> None:
    """Mapping settings made of hostile text (info keys, prefixes, keys in paths) and events
    holding it: the generated ``build`` gives what the plain mapper gives."""
    paths = {key: _quoted_path(key) for key in keys}
    paths = {key: path for key, path in paths.items() if path is not None}
    if as_object:
        info: object = dict(paths)  # info keys named by hostile text
    else:
        info = [{"path": path, "prefix": prefix} for path in paths.values()]
    first = next(iter(paths.values()), "$.user_id")
    mapping = {"externalId": first, "action": first, "name": first, "info": info}
    event = {key: values[i] for i, key in enumerate(keys)}
    event.update({key: {key: value} for key, value in zip(keys[1:], values, strict=False)})
    got = ActivityMapper(mapping).build(event)
    assert repr(got) == repr(ReferenceMapper(mapping, None, None).build(event))


def _source(*lines: str) -> Source:
    source = Source("run", ("record",), ("value",))
    for line in lines:
        source.line(line)
    return source


@pytest.mark.parametrize(
    "line",
    [
        "return 'text'",  # a text literal
        'return "text"',
        "return record  # a comment",
        "return '\\x41'",
        "return __import__",  # a word nobody declared
        "return os",
        "return _c0",  # looks bound, but is not
        "return record.ü",  # not ASCII
    ],
)
def test_source_that_could_hold_outside_text_is_refused(line: str) -> None:
    with pytest.raises(SourceError):
        _source(line).function()


def test_bound_values_are_read_not_written() -> None:
    source = Source("run", ("record",), ("get",))
    key = source.bind("x'] = 1; import os; os._exit(3) #")
    source.line(f"return record.get({key})")
    run = source.function()
    assert run({"x'] = 1; import os; os._exit(3) #": 7}) == 7
    assert "import" not in source.check()


def test_only_codegen_compiles_source() -> None:
    """At most one code generator: nothing else in the package calls exec, eval or compile."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "codegen.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("exec", "eval", "compile")
            ):
                offenders.append(f"{path.name}:{node.lineno} {node.func.id}")
    assert offenders == []
