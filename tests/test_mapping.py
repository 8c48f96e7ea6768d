"""Mapping: Planhat field <- JSONPath over the canonical event."""

from __future__ import annotations

import pytest

from target_planhat.mapping import ActivityMapper, MappingError

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
