"""Mapping: Planhat field <- JSONPath over the canonical event."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from target_planhat import mapping as mapping_module
from target_planhat.mapping import (
    NAME_CACHE_LIMIT,
    NUMBER_FIELDS,
    STRING_FIELDS,
    ActivityMapper,
    MappingError,
)
from target_planhat.paths import CompiledPath
from tests.support.examples import examples
from tests.support.mapping_reference import ReferenceMapper

EVENT = {
    "user_id": "alice",
    "event_type": "Report Exported",
    "event_time": "2024-03-01T09:30:00.250Z",
    "device_id": "dev-9",
    "groups": {"company": ["acme-1", "acme-2"], "team": []},
    "event_properties": {"plan": "pro", "format": "csv", "rows": 120},
    "user_properties": {"plan": "free", "email": "alice@acme.test", "name": "Alice A"},
    "group_properties": {"tier": "gold"},
    "data": {"path": "/reports"},
    "weight_prop": 3,
}


def test_default_mapping_follows_amplitude_destination() -> None:
    activity = ActivityMapper().build(EVENT)
    assert activity == {
        "externalId": "alice",
        "companyExternalId": "acme-1",
        "action": "Report Exported",
        "date": "2024-03-01T09:30:00.250Z",
        "info": {
            "plan": "pro",
            "format": "csv",
            "rows": 120,
            "user.plan": "free",
            "user.email": "alice@acme.test",
            "user.name": "Alice A",
            "group.tier": "gold",
        },
    }


def test_user_fields_replace_defaults_one_by_one() -> None:
    mapper = ActivityMapper(
        {
            "externalId": "",  # explicitly unmapped
            "email": "$.user_properties.email",
            "name": "$.user_properties.name",
            "weight": "$.weight_prop",
            "count": "$.event_properties.rows",
        }
    )
    activity = mapper.build(EVENT)
    assert "externalId" not in activity
    assert activity["email"] == "alice@acme.test"
    assert activity["name"] == "Alice A"
    assert activity["weight"] == 3
    assert activity["count"] == 120
    assert activity["action"] == "Report Exported"  # default kept


def test_path_matching_nothing_omits_the_field() -> None:
    mapper = ActivityMapper({"assetExternalId": "$.groups.asset", "projectExternalId": "$.nope"})
    activity = mapper.build(EVENT)
    assert "assetExternalId" not in activity
    assert "projectExternalId" not in activity


def test_null_and_empty_list_matches_omit_the_field() -> None:
    mapper = ActivityMapper({"assetExternalId": "$.groups.team", "name": "$.missing"})
    event = dict(EVENT, missing=None)
    activity = mapper.build(event)
    assert "assetExternalId" not in activity
    assert "name" not in activity


def test_list_match_gives_first_element_for_scalar_fields() -> None:
    assert ActivityMapper().build(EVENT)["companyExternalId"] == "acme-1"
    mapper = ActivityMapper({"companyExternalId": "$.groups.company[1]"})
    assert mapper.build(EVENT)["companyExternalId"] == "acme-2"


def test_wildcard_path_takes_first_match() -> None:
    mapper = ActivityMapper({"assetExternalId": "$.groups[*][0]"})
    assert mapper.build(EVENT)["assetExternalId"] == "acme-1"


def test_numeric_ids_become_strings() -> None:
    activity = ActivityMapper().build(dict(EVENT, user_id=12345))
    assert activity["externalId"] == "12345"


def test_info_as_list_merges_objects_in_order() -> None:
    mapper = ActivityMapper({"info": ["$.user_properties", "$.event_properties"]})
    info = mapper.build(EVENT)["info"]
    assert info["plan"] == "pro"  # the later object wins
    assert info["email"] == "alice@acme.test"


def test_info_as_object_picks_keys() -> None:
    mapper = ActivityMapper({"info": {"format": "$.event_properties.format", "dev": "$.device_id"}})
    assert mapper.build(EVENT)["info"] == {"format": "csv", "dev": "dev-9"}


def test_info_object_form_leaves_out_missing_keys() -> None:
    mapper = ActivityMapper({"info": {"x": "$.nope", "path": "$.data.path"}})
    assert mapper.build(EVENT)["info"] == {"path": "/reports"}


def test_info_non_object_match_is_kept_under_its_name() -> None:
    event = dict(EVENT, user_properties="{'broken': ")
    info = ActivityMapper().build(event)["info"]
    assert info["user.user_properties"] == "{'broken': "


def test_include_and_exclude_properties() -> None:
    mapper = ActivityMapper(
        include_properties=["plan", "user.*"], exclude_properties=["user.email"]
    )
    info = mapper.build(EVENT)["info"]
    assert info == {"plan": "pro", "user.plan": "free", "user.name": "Alice A"}


def test_property_globs_are_case_sensitive() -> None:
    info = ActivityMapper(exclude_properties=["PLAN"]).build(EVENT)["info"]
    assert "plan" in info


def test_info_unmapped_is_left_out() -> None:
    assert "info" not in ActivityMapper({"info": ""}).build(EVENT)


@pytest.mark.parametrize(
    ("mapping", "setting"),
    [
        ({"externalID": "$.user_id"}, "mapping: unknown Planhat field(s) externalID"),
        ({"action": "$.[["}, "mapping.action"),
        ({"action": 5}, "mapping.action"),
        ({"info": ["$.a", 3]}, "mapping.info[1]"),
        ({"info": [{"path": "$.(("}]}, "mapping.info[0].path"),
        ({"info": {"k": "$..[["}}, "mapping.info.k"),
        ({"info": 7}, "mapping.info"),
    ],
)
def test_bad_mapping_names_the_setting(mapping: dict, setting: str) -> None:
    with pytest.raises(MappingError) as caught:
        ActivityMapper(mapping)
    assert str(caught.value).startswith(setting)


def test_bad_property_globs() -> None:
    with pytest.raises(MappingError, match="include_properties"):
        ActivityMapper(include_properties=[1])  # type: ignore[list-item]


def test_input_event_is_not_mutated() -> None:
    event = {"user_id": "u", "event_type": "a", "event_time": "x", "event_properties": {"a": 1}}
    snapshot = repr(event)
    ActivityMapper(exclude_properties=["a"]).build(event)
    assert repr(event) == snapshot


def test_word_in_brackets_in_property_globs_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="target_planhat.filters"):
        ActivityMapper(exclude_properties=["[Amplitude] Page URL"])
    assert "exclude_properties" in caplog.text and "'[[]Amplitude] Page URL'" in caplog.text


# --- Property test: build() against a copy of the original, straightforward algorithm. ---------
#
# `ReferenceMapper` is the mapper as it was before build() was specialised for speed: every path
# goes through `CompiledPath.values`, every rule is spelled out once. The fast build must give
# the same activity for every event and mapping, down to key order and value types.


PLAIN_PATHS = [
    "$",
    "$[0]",
    "$.user_id",
    "$.email",
    "$.event_type",
    "$.event_time",
    "$.device_id",
    "$.weight_prop",
    "$.nope",
    "$.groups",
    "$.groups.company",
    "$.groups.company[0]",
    "$.groups.company[1]",
    "$.groups.company[-1]",
    "$.groups.team",
    "$.event_properties",
    "$.user_properties",
    "$.group_properties",
    "$.event_properties.plan",
    "$.event_properties.plan[0]",
    "$.user_properties.email",
    "$.user_properties.name",
    "$.user_properties.plan",
    "$.data.path",
    "$.data.path.deep",
    "$.data[0]",
    "$.data[0].path",
]
NON_PLAIN_PATHS = [
    "$.event_properties.*",
    "$..plan",
    "$..email",
    "$..company",
    "$.*.plan",
    "$.groups[*]",
    "$.groups.*[0]",
    "$.groups.company[*]",
    "$.groups.company[0:2]",
    "$.user_properties[plan,email]",
]
PATHS = PLAIN_PATHS + NON_PLAIN_PATHS
# Paths that often match objects or lists: what info sources are for.
BAG_PATHS = [
    "$.event_properties",
    "$.user_properties",
    "$.group_properties",
    "$.data",
    "$.data[0]",
    "$.groups",
    "$.event_properties.*",
    "$.groups[*]",
    "$..company",
]
PROPERTY_NAMES = ["plan", "email", "name", "rows", "path", "user.plan", "a", "B", "1", ""]
GLOBS = ["plan", "user.*", "*mail*", "group.*", "[a-m]*", "?", "*", "1", "*properties"]
PREFIXES = [None, "", "user.", "group.", "x_"]


def test_path_pools_are_what_their_names_say() -> None:
    assert all(CompiledPath(path).is_plain for path in PLAIN_PATHS)
    assert not any(CompiledPath(path).is_plain for path in NON_PLAIN_PATHS)


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(PROPERTY_NAMES),
    st.text(max_size=4),
)
# Keys are strings as JSON gives them, with the odd int or bool to hold str(key) to account.
_key = st.one_of(
    st.sampled_from(PROPERTY_NAMES),
    st.sampled_from(PROPERTY_NAMES),
    st.integers(0, 2),
    st.booleans(),
)
_value = st.one_of(
    _leaf,
    st.lists(_leaf, max_size=3),
    st.dictionaries(_key, _leaf, max_size=3),
)
_bag = st.one_of(
    st.dictionaries(_key, _value, min_size=1, max_size=6),
    st.dictionaries(st.sampled_from(["plan", "email", 1, True]), _value, min_size=1),  # shared
    st.dictionaries(_key, _value, max_size=6),
    st.none(),
    st.text(max_size=6),  # a bag that did not parse
    st.integers(),
    st.lists(_leaf, max_size=2),
)
_id = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.integers(-5, 10**12),
    st.floats(allow_nan=False),
    st.booleans(),
)
_group_ids = st.one_of(
    st.lists(st.one_of(st.none(), _id), max_size=3),
    st.tuples(st.none(), _id).map(list),  # first non-None is not the first
    _id,
)
_groups = st.one_of(
    st.fixed_dictionaries({"company": _group_ids}, optional={"team": _group_ids}),
    st.none(),
    st.text(max_size=3),
)
_event_fields = st.fixed_dictionaries(
    {
        "user_id": _id,
        "email": _id,
        "event_type": st.one_of(st.none(), st.text(max_size=4)),
        "event_time": st.one_of(st.none(), st.text(max_size=4), st.integers()),
        "device_id": _id,
        "weight_prop": st.one_of(_id, st.lists(_id, max_size=2)),
        "plan": _value,
        "groups": _groups,
        "event_properties": _bag,
        "user_properties": _bag,
        "group_properties": _bag,
        "data": st.one_of(_bag, st.lists(_bag, max_size=2)),
    },
)


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    """An event with all fields, less a few (a missing key and a null are both "no match")."""
    event = draw(_event_fields)
    for key in draw(st.sets(st.sampled_from(sorted(event)), max_size=4)):
        del event[key]
    return event


_path_or_unmapped = st.one_of(
    st.sampled_from(PATHS), st.sampled_from(PATHS), st.sampled_from(["", None])
)
_info_path = st.one_of(st.sampled_from(BAG_PATHS), st.sampled_from(PATHS))
_info_item = st.one_of(
    _info_path,
    st.fixed_dictionaries({"path": _info_path}, optional={"prefix": st.sampled_from(PREFIXES)}),
)
_info = st.one_of(
    st.lists(_info_item, min_size=1, max_size=4),
    # Objects merged as they are, so a later one's keys win: kept apart by prefixes otherwise.
    st.permutations(BAG_PATHS[:3]),
    st.dictionaries(st.sampled_from(PROPERTY_NAMES), _info_path, max_size=4),
    _info_path,
    st.sampled_from([None, ""]),
)
_scalar_mapping = {field: _path_or_unmapped for field in (*STRING_FIELDS, "date", *NUMBER_FIELDS)}
_mapping = st.one_of(
    st.fixed_dictionaries({"info": _info}, optional=_scalar_mapping),
    st.fixed_dictionaries({}, optional=_scalar_mapping),  # the default info
    st.none(),
)
_globs = st.one_of(st.none(), st.lists(st.sampled_from(GLOBS), max_size=3))


# Cases the rules hinge on, too rare to leave to chance.
_LATER_WINS = {"event_properties": {"plan": "pro", "x": 1}, "user_properties": {"plan": "free"}}
_ONE_AND_TRUE = [{"user_properties": {1: "a"}}, {"user_properties": {True: "b"}}]
_LIST_MATCHES = {"groups": {"company": [None, "x"]}, "data": [["y", "z"]]}


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # two unprefixed objects sharing a key: the later one wins
    mapping={"info": ["$.event_properties", "$.user_properties"]},
    include=None,
    exclude=None,
    events=[_LATER_WINS],
    as_proxy=[False] * 4,
    cache_limit=NAME_CACHE_LIMIT,
)
@example(  # 1 and True: one dict key, two names ("user.1", "user.True")
    mapping=None,
    include=None,
    exclude=None,
    events=_ONE_AND_TRUE,
    as_proxy=[False] * 4,
    cache_limit=NAME_CACHE_LIMIT,
)
@example(  # an info key takes the first match as it is (a list too; a null: no key)
    mapping={
        "name": "$..company",
        "info": {"c": "$..company", "d": "$.data[0]", "e": "$.groups.company[*]"},
    },
    include=None,
    exclude=None,
    events=[_LIST_MATCHES],
    as_proxy=[False] * 4,
    cache_limit=NAME_CACHE_LIMIT,
)
@given(
    mapping=_mapping,
    include=_globs,
    exclude=_globs,
    events=st.lists(_event(), min_size=1, max_size=4),
    as_proxy=st.lists(st.booleans(), min_size=4, max_size=4),
    cache_limit=st.sampled_from([NAME_CACHE_LIMIT, 1, 0]),
)
def test_build_matches_reference_algorithm(
    mapping: dict[str, Any] | None,
    include: list[str] | None,
    exclude: list[str] | None,
    events: list[dict[str, Any]],
    as_proxy: list[bool],
    cache_limit: int,
) -> None:
    mapper = ActivityMapper(mapping, include, exclude)
    reference = ReferenceMapper(mapping, include, exclude)
    # Several events per mapper, so whatever the mapper caches is used warm as well as cold
    # (and full: the name caches stop growing at their limit).
    for event, proxy in zip(events, as_proxy[: len(events)], strict=True):
        doc: Any = MappingProxyType(event) if proxy else event  # a Mapping that is no dict
        snapshot = repr(event)
        expected = reference.build(doc)
        with patch.object(mapping_module, "NAME_CACHE_LIMIT", cache_limit):
            got = mapper.build(doc)
        assert got == expected
        assert repr(got) == repr(expected)  # value types too: 1 vs "1" vs True vs 1.0
        assert list(got) == list(expected)
        if isinstance(expected.get("info"), dict):
            assert list(got["info"]) == list(expected["info"])
        assert repr(event) == snapshot


def test_mapped_fields_names_each_filled_field_with_its_paths() -> None:
    mapper = ActivityMapper({"companyExternalId": "", "email": "$.user_properties.email"})
    assert mapper.mapped_fields == {
        "externalId": "$.user_id",
        "email": "$.user_properties.email",
        "action": "$.event_type",
        "date": "$.event_time",
        "info": "$.event_properties, $.user_properties, $.group_properties",
    }
    keyed = ActivityMapper({"info": {"plan": "$.user_properties.plan"}})
    assert keyed.mapped_fields["info"] == "$.user_properties.plan"
    assert "info" not in ActivityMapper({"info": ""}).mapped_fields
