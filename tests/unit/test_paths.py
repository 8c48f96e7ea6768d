"""CompiledPath gives exactly what jsonpath-ng gives, on the direct route and on the fallback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonpath_ng.ext import parse

from target_planhat.paths import CompiledPath, PathError
from tests.support.examples import examples

KEYS = ["a", "b", "user_id", "groups", "company", "$insert_id", "a b", "x-y", "a.b", "0", ""]
IDENTIFIERS = ["a", "b", "user_id", "groups", "company"]


def reference(expression, doc):
    return [match.value for match in parse(expression).find(doc)]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "s", "acme", "0"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=25,
)


def _quote(key: str) -> st.SearchStrategy[str]:
    options = [f"['{key}']"]
    if '"' not in key:
        options.append(f'["{key}"]')
    return st.sampled_from(options)


plain_step = st.one_of(
    st.sampled_from(IDENTIFIERS).map(lambda key: f".{key}"),
    st.sampled_from([k for k in KEYS if k]).flatmap(_quote),
    st.sampled_from([-7, -4, -2, -1, 0, 1, 2, 3, 7]).map(lambda i: f"[{i}]"),
)
other_step = st.sampled_from(
    ["[*]", ".*", "..a", "..company", "[0:2]", "[-1:]", "[0,1]", "[?(@.a)]", "[?(@ == 1)]"]
)
plain_paths = st.lists(plain_step, max_size=5).map(lambda steps: "$" + "".join(steps))
any_paths = st.lists(st.one_of(plain_step, other_step), min_size=1, max_size=5).map(
    lambda steps: "$" + "".join(steps)
)


def check(expression, doc):
    try:
        expected = reference(expression, doc)
    except Exception as exc:  # jsonpath-ng's own failures: CompiledPath must fail alike
        with pytest.raises(type(exc)):
            CompiledPath(expression).values(doc)
        return
    assert CompiledPath(expression).values(doc) == expected


@settings(max_examples=examples(1500), deadline=None)
@given(plain_paths, documents)
def test_plain_paths_take_the_direct_route_and_match_jsonpath_ng(expression, doc):
    assert CompiledPath(expression).is_plain
    check(expression, doc)


@settings(max_examples=examples(1000), deadline=None)
@given(any_paths, documents)
def test_any_path_matches_jsonpath_ng(expression, doc):
    check(expression, doc)


@settings(max_examples=examples(300), deadline=None)
@given(plain_paths, documents)
def test_paths_under_an_event_shaped_document(expression, doc):
    event = {"a": doc, "b": [doc, None, 3], "groups": {"company": [doc, "acme"]}, "0": None}
    check(expression, event)


EVENT = {
    "$insert_id": "ins-1",
    "user_id": "u-1",
    "groups": {"company": ["acme", "beta"], "team": []},
    "event_properties": {"plan": "pro", "nested": {"k": [1, {"x": None}]}},
    "none": None,
    "text": "abc",
    "number": 7,
}


@pytest.mark.parametrize(
    ("expression", "plain"),
    [
        ("$.user_id", True),
        ("$['$insert_id']", True),
        ('$["$insert_id"]', True),
        ("$.groups.company", True),
        ("$.groups.company[0]", True),
        ("$.groups.company[1]", True),
        ("$.groups.company[-1]", True),
        ("$.groups.company[-2]", True),
        ("$.groups.company[2]", True),
        ("$.groups.company[-3]", True),
        ("$.groups.team[0]", True),
        ("$.groups.team[-1]", True),
        ("$.event_properties.nested.k[1].x", True),
        ("$.none.deeper", True),
        ("$.none[0]", True),
        ("$.text[0]", True),
        ("$.text.x", True),
        ("$.number[0]", True),
        ("$.number.x", True),
        ("$.missing", True),
        ("$.missing[0]", True),
        ("$[0]", True),
        ("$", True),
        ("user_id", True),
        ("$.groups.*", False),
        ("$.groups.company[*]", False),
        ("$..x", False),
        ("$.groups.company[0:1]", False),
        ("$.event_properties[?(@.k)]", False),
    ],
)
def test_examples(expression, plain):
    path = CompiledPath(expression)
    assert path.is_plain is plain
    assert path.values(EVENT) == reference(expression, EVENT)
    for doc in (None, "text", 3, [EVENT], [], {}):
        check(expression, doc)


def test_last_key():
    assert CompiledPath("$.groups.company").last_key == "company"
    assert CompiledPath("$['$insert_id']").last_key == "$insert_id"
    assert CompiledPath("$.groups.company[0]").last_key is None
    assert CompiledPath("$..x").last_key is None


@pytest.mark.parametrize("expression", ["", "   ", "$.[", "$..[?", None, 3])
def test_bad_paths_raise_path_error(expression):
    with pytest.raises(PathError):
        CompiledPath(expression)


@settings(max_examples=examples(300))
@given(any_paths, st.dictionaries(st.sampled_from(KEYS), documents, max_size=5))
def test_root_field_is_all_a_path_reads(expression, doc):
    """A path with a ``root_field`` finds the same values in a record cut down to that field:
    what lets the target normalise only the fields its paths can read."""
    try:
        path = CompiledPath(expression)
    except PathError:
        return
    if path.root_field is None:
        return
    cut = {path.root_field: doc[path.root_field]} if path.root_field in doc else {}
    assert path.values(cut) == path.values(doc)


@pytest.mark.parametrize(
    ("expression", "root"),
    [
        ("$.user_id", "user_id"),
        ("$.groups.company[0]", "groups"),
        ("$['$insert_id']", "$insert_id"),
        ("$.event_properties.*", "event_properties"),
        ("$.a[?(@.b > 1)]", "a"),
        ("$..x", None),
        ("$.*", None),
        ("$[?(@.x)]", None),
        ("$", None),
    ],
)
def test_root_field_examples(expression, root):
    assert CompiledPath(expression).root_field == root
