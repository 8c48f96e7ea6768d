"""Build one Planhat activity from one canonical Amplitude event, with JSONPath mappings.

The mapping is compiled once at start-up so a bad path or an unknown field fails before any input
is read, and so nothing is parsed per record: down to a ``build`` function specialised for it by
closures.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from target_planhat.errors import MappingError, PathError
from target_planhat.filters import warn_word_classes
from target_planhat.paths import CompiledPath

STRING_FIELDS = (
    "externalId",
    "email",
    "name",
    "companyExternalId",
    "assetExternalId",
    "projectExternalId",
    "action",
)
NUMBER_FIELDS = ("weight", "count")
FIELDS = (*STRING_FIELDS, "date", *NUMBER_FIELDS, "info")

# Amplitude's own destination sends all event, user and group properties. They share one `info`
# object in Planhat, so user and group properties get a prefix: an event property `plan` and a
# user property `plan` stay apart as `plan` and `user.plan`.
DEFAULT_INFO: list[Any] = [
    "$.event_properties",
    {"path": "$.user_properties", "prefix": "user."},
    {"path": "$.group_properties", "prefix": "group."},
]
DEFAULT_MAPPING: dict[str, Any] = {
    "externalId": "$.user_id",
    "companyExternalId": "$.groups.company",
    "action": "$.event_type",
    "date": "$.event_time",
    "info": DEFAULT_INFO,
}

# Property names repeat from record to record, so each info source remembers the names it made
# (prefix added, selection applied), up to this many.
NAME_CACHE_LIMIT = 100_000


def _path(setting: str, expression: Any) -> CompiledPath:
    try:
        return CompiledPath(expression)
    except PathError as exc:
        raise MappingError(f"{setting}: {exc}") from None


def _first(path: CompiledPath, doc: Any) -> Any:
    """The first non-null match; a matched list gives its first element (``$.groups.company``)."""
    for value in path.values(doc):
        if isinstance(value, list):
            value = next((item for item in value if item is not None), None)
        if value is not None:
            return value
    return None


class _InfoSource:
    __slots__ = ("name", "path", "prefix")

    def __init__(self, path: CompiledPath, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self.name = path.last_key or path.expression


class PropertySelector:
    """``include_properties`` / ``exclude_properties``: globs over the final keys of ``info``."""

    def __init__(self, include: Sequence[str] | None, exclude: Sequence[str] | None) -> None:
        for setting, globs in (("include_properties", include), ("exclude_properties", exclude)):
            if globs is not None and not all(isinstance(g, str) for g in globs):
                raise MappingError(f"{setting}: must be a list of glob strings")
            warn_word_classes(setting, globs or ())
        self._include = self._regex(include)
        self._exclude = self._regex(exclude)
        self.selects_all = self._include is None and self._exclude is None
        self._cache: dict[str, bool] = {}

    @staticmethod
    def _regex(globs: Sequence[str] | None) -> re.Pattern[str] | None:
        if not globs:
            return None
        return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))

    def keeps(self, key: str) -> bool:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        keep = (self._include is None or bool(self._include.match(key))) and not (
            self._exclude is not None and self._exclude.match(key)
        )
        if len(self._cache) < 100_000:  # property names repeat; bound it anyway
            self._cache[key] = keep
        return keep


class ActivityMapper:
    """Compiled ``mapping`` plus property selection: ``build(event) -> activity``.

    ``build`` returns the activity; fields whose path matches nothing (or null) are left out. It
    runs once per record, so everything that is the same for every record is decided once, at
    start-up (see ``_builder``), and ``build`` is set per instance; ``tests/unit/test_mapping.py``
    holds it to the plain algorithm, one loop over the compiled paths.
    """

    build: Callable[[Mapping[str, Any]], dict[str, Any]]

    def __init__(
        self,
        mapping: Mapping[str, Any] | None = None,
        include_properties: Sequence[str] | None = None,
        exclude_properties: Sequence[str] | None = None,
    ) -> None:
        if mapping is not None and not isinstance(mapping, Mapping):
            raise MappingError("mapping: must be an object of Planhat field -> JSONPath")
        spec = dict(DEFAULT_MAPPING)
        spec.update(mapping or {})
        unknown = sorted(set(spec) - set(FIELDS))
        if unknown:
            raise MappingError(
                f"mapping: unknown Planhat field(s) {', '.join(unknown)}; "
                f"known fields are {', '.join(FIELDS)}"
            )
        self._scalars: list[tuple[str, CompiledPath]] = []
        for field in (*STRING_FIELDS, "date", *NUMBER_FIELDS):
            expression = spec.get(field)
            if expression is None or expression == "":
                continue  # explicitly unmapped
            self._scalars.append((field, _path(f"mapping.{field}", expression)))
        self._info_list: list[_InfoSource] | None = None
        self._info_keys: list[tuple[str, CompiledPath]] | None = None
        self._compile_info(spec.get("info"))
        self.properties = PropertySelector(include_properties, exclude_properties)
        self.build = self._builder(dict_events=True)

    @property
    def mapped_fields(self) -> dict[str, str]:
        """Each Planhat field this mapping fills -> its JSONPath(s), for messages.

        A path that matches nothing leaves its field out (``info`` empty): the report counts
        such activities per field, so a wrong path shows before Planhat's data does.
        """
        fields = {field: path.expression for field, path in self._scalars}
        if self._info_keys is not None:
            fields["info"] = ", ".join(path.expression for _, path in self._info_keys)
        elif self._info_list is not None:
            fields["info"] = ", ".join(source.path.expression for source in self._info_list)
        return fields

    @property
    def paths(self) -> list[CompiledPath]:
        """Every path the mapping reads: which fields of a record it can use at all."""
        paths = [path for _, path in self._scalars]
        paths += [path for _, path in self._info_keys or ()]
        paths += [source.path for source in self._info_list or ()]
        return paths

    def _compile_info(self, info: Any) -> None:
        if info is None or info == "":
            return
        if isinstance(info, str):
            info = [info]
        if isinstance(info, Mapping):
            self._info_keys = [
                (str(key), _path(f"mapping.info.{key}", expression))
                for key, expression in info.items()
            ]
            return
        if not isinstance(info, list):
            raise MappingError("mapping.info: must be a JSONPath, a list of them, or an object")
        sources: list[_InfoSource] = []
        for position, item in enumerate(info):
            setting = f"mapping.info[{position}]"
            if isinstance(item, str):
                sources.append(_InfoSource(_path(setting, item), ""))
            elif isinstance(item, Mapping) and set(item) <= {"path", "prefix"} and "path" in item:
                prefix = item.get("prefix") or ""
                if not isinstance(prefix, str):
                    raise MappingError(f"{setting}.prefix: must be a string")
                sources.append(_InfoSource(_path(f"{setting}.path", item["path"]), prefix))
            else:
                raise MappingError(
                    f'{setting}: must be a JSONPath string or {{"path": ..., "prefix": ...}}'
                )
        self._info_list = sources

    def _builder(self, dict_events: bool) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """``build`` for this mapping, specialised by closures (no generated source).

        What is the same for every record is decided here: which paths are read in place
        (``dict_events``: one- and two-key plain paths, nearly all mapping paths, read with
        ``dict.get``; every other path goes through ``CompiledPath.values``, as does every path
        of an event that is no dict, since plain paths walk only dicts), which keys of an
        ``info`` object the property selection keeps, and how each ``info`` source names keys.
        """
        keeps = None if self.properties.selects_all else self.properties.keeps
        scalars = tuple(
            (field, *_fetch(path, dict_events), field in STRING_FIELDS)
            for field, path in self._scalars
        )
        info_keys = None
        if self._info_keys is not None:
            info_keys = tuple(
                (key, *_fetch(path, dict_events))
                for key, path in self._info_keys
                if keeps is None or keeps(key)
            )
        sources = None
        if self._info_list is not None:
            sources = tuple(
                (*_fetch(source.path, dict_events), _merger(source, keeps))
                for source in self._info_list
            )
        build_any = self._builder(dict_events=False) if dict_events else None

        def build(event: Mapping[str, Any]) -> dict[str, Any]:
            if build_any is not None and not isinstance(event, dict):
                return build_any(event)
            activity: dict[str, Any] = {}
            for field, first, second, path, as_string in scalars:
                if first is None:
                    value = _first(path, event)
                else:
                    value = event.get(first)
                    if second is not None:
                        value = value.get(second) if isinstance(value, dict) else None
                    if type(value) is str:  # the usual: no further checks
                        activity[field] = value
                        continue
                    if isinstance(value, list):  # one match: its first non-None item
                        if value and value[0] is not None:
                            value = value[0]
                        else:
                            value = next((item for item in value if item is not None), None)
                if value is not None:
                    if (
                        as_string
                        and type(value) is not str
                        and isinstance(value, (int, float))
                        and not isinstance(value, bool)
                    ):
                        value = str(value)  # numeric user ids: Planhat ids are strings
                    activity[field] = value
            if info_keys is not None:
                info: dict[Any, Any] = {}
                for key, first, second, path in info_keys:
                    if first is None:  # the first match as it is (no list rule)
                        found = path.values(event)
                        value = found[0] if found else None
                    else:
                        value = event.get(first)
                        if second is not None:
                            value = value.get(second) if isinstance(value, dict) else None
                    if value is not None:
                        info[key] = value
                activity["info"] = info
            elif sources is not None:
                info = {}
                for first, second, path, merge in sources:
                    if first is None:
                        for value in path.values(event):
                            merge(value, info)
                    else:
                        value = event.get(first)
                        if second is not None:
                            value = value.get(second) if isinstance(value, dict) else None
                        merge(value, info)
                activity["info"] = info
            return activity

        return build


def _fetch(path: CompiledPath, in_place: bool) -> tuple[Any, Any, CompiledPath]:
    """``(first key, second key or None, path)`` for a path read in place with ``dict.get``,
    else ``(None, None, path)``: only one- and two-key plain paths are, and only in dicts."""
    steps = path.plain_steps
    if in_place and steps and len(steps) <= 2 and all(type(step) is str for step in steps):
        return steps[0], steps[1] if len(steps) == 2 else None, path
    return None, None, path


_Merge = Callable[[Any, dict[Any, Any]], None]


def _merger(source: _InfoSource, keeps: Callable[[str], bool] | None) -> _Merge:
    """``merge(value, info)`` for one match of ``source``: an object's keys go into ``info``
    (later keys win), prefixed and selected; anything else (a bag that did not parse) is kept
    under the source's own name; null is left out."""
    prefix = source.prefix
    own = prefix + source.name if prefix else source.name
    keep_own = keeps is None or keeps(own)
    if not prefix and keeps is None:

        def merge_as_is(value: Any, info: dict[Any, Any]) -> None:
            if isinstance(value, dict):
                info.update(value)
            elif value is not None and keep_own:
                info[own] = value

        return merge_as_is

    names: dict[str, str | None] = {}
    namer = _namer(prefix, keeps, names)

    def merge_one_by_one(value: dict[Any, Any], info: dict[Any, Any]) -> None:
        for key, item in value.items():
            try:
                name = names[key]
            except KeyError:
                name = namer(key)
            if name is not None:
                info[name] = item

    if keeps is None:  # every key kept: no name is None

        def merge_named(value: Any, info: dict[Any, Any]) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    try:
                        name = names[key]
                    except KeyError:
                        name = namer(key)
                    info[name] = item
            elif value is not None:
                info[own] = value

        return merge_named

    def merge_selected(value: Any, info: dict[Any, Any]) -> None:
        if isinstance(value, dict):
            merge_one_by_one(value, info)
        elif value is not None and keep_own:
            info[own] = value

    return merge_selected


def _namer(
    prefix: str, keeps: Callable[[str], bool] | None, names: dict[str, str | None]
) -> Callable[[Any], str | None]:
    """``key -> its name in info`` (None if not selected), remembered in ``names``."""

    def name_of(key: Any) -> str | None:
        name = key if type(key) is str else str(key)
        if prefix:
            name = prefix + name
        kept = name if keeps is None or keeps(name) else None
        # Only str keys are remembered: 1 and True are one dict key but "1" and "True" here.
        if type(key) is str and len(names) < NAME_CACHE_LIMIT:
            names[key] = kept
        return kept

    return name_of
