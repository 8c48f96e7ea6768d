"""Roll-ups: chatty events sent as one activity per user, company, object, action and hour/day.

``rollup: {"actions": [globs], "per": "hour" | "day"}``. Events of those actions with the same
identifier (``externalId`` / ``email``), company, asset, project and action in the same UTC hour
or day become one activity: ``count`` = how many, ``date`` = the first one's, ``info`` = the
properties they all share (same key, same value). Planhat adds ``count`` up, so a health score
built on activity counts reads the same, with a fraction of the rows.

Pure: activities in, groups and combined activities out. Which events are new (the ledger) and
which are acknowledged stays with the runtime, so each event is still counted once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from target_planhat.errors import RollUpError
from target_planhat.filters import FilterError, compile_globs

PERIODS = {"hour": 13, "day": 10}  # the prefix of an ISO 8601 date that names the period
_GROUP_FIELDS = (
    "externalId",
    "email",
    "companyExternalId",
    "assetExternalId",
    "projectExternalId",
    "action",
)


class RollUp:
    """``rollup``, compiled: which actions roll up, and into which period."""

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, Mapping):
            raise RollUpError('rollup: must be an object {"actions": [globs], "per": "hour"}')
        extra = set(spec) - {"actions", "per"}
        if extra:
            raise RollUpError(f"rollup: unknown key(s) {', '.join(sorted(extra))}")
        actions = spec.get("actions")
        if not actions:
            raise RollUpError("rollup.actions: required, a non-empty list of action globs")
        try:
            globs = compile_globs("rollup.actions", actions)
        except FilterError as exc:
            raise RollUpError(str(exc)) from None
        assert globs is not None
        self._pattern = re.compile("|".join(f"(?:{rx.pattern})" for _, rx in globs))
        per = spec.get("per", "hour")
        if per not in PERIODS:
            raise RollUpError(f"rollup.per: {per!r} must be 'hour' or 'day'")
        self.per = per
        self._prefix = PERIODS[per]
        self._cache: dict[str, bool] = {}

    def applies(self, action: Any) -> bool:
        """True when events of ``action`` roll up."""
        if not isinstance(action, str):
            return False
        hit = self._cache.get(action)
        if hit is None:
            hit = bool(self._pattern.match(action))
            if len(self._cache) < 10_000:
                self._cache[action] = hit
        return hit

    def group_key(self, activity: Mapping[str, Any]) -> tuple[Any, ...]:
        date = activity.get("date")
        period = date[: self._prefix] if isinstance(date, str) else None
        return (*(activity.get(field) for field in _GROUP_FIELDS), period)

    def groups(self, activities: Iterable[tuple[int, Mapping[str, Any]]]) -> list[list[int]]:
        """Indexes of the activities that roll up together, each group in input order, groups
        ordered by their first member."""
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for index, activity in activities:
            by_key.setdefault(self.group_key(activity), []).append(index)
        return sorted(by_key.values(), key=lambda members: members[0])


def _shared_info(infos: Sequence[Any]) -> dict[str, Any]:
    """The properties every activity has with the same value (compared as JSON: 1 != true)."""
    first = infos[0] if isinstance(infos[0], dict) else {}
    shared: dict[str, Any] = {}
    for key, value in first.items():
        encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        for other in infos[1:]:
            if not isinstance(other, dict) or key not in other:
                break
            if orjson.dumps(other[key], option=orjson.OPT_SORT_KEYS) != encoded:
                break
        else:
            shared[key] = value
    return shared


def combine(activities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One activity for a group: the first one's fields, ``count`` = how many events it stands
    for (an activity already carrying a ``count`` stands for that many), ``info`` = what they
    all share."""
    first = activities[0]
    combined = dict(first)
    total = 0
    for activity in activities:
        count = activity.get("count")
        total += count if isinstance(count, int) and not isinstance(count, bool) else 1
    combined["count"] = total
    if any("info" in activity for activity in activities):
        combined["info"] = _shared_info([activity.get("info") for activity in activities])
    return combined
