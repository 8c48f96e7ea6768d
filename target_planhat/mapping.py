"""Build one Planhat activity from one canonical Amplitude event, with JSONPath mappings.

The mapping is compiled once at start-up so a bad path or an unknown field fails before any input
is read, and so nothing is parsed per record.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from target_planhat.filters import warn_word_classes
from target_planhat.paths import CompiledPath, PathError


class MappingError(ValueError):
    """A mapping setting that cannot work; the message names the setting."""


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
    """Compiled ``mapping`` plus property selection: ``build(event) -> activity``."""

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
                    f"{setting}: must be a JSONPath string or {{\"path\": ..., \"prefix\": ...}}"
                )
        self._info_list = sources

    def build(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Return the activity; fields whose path matches nothing (or null) are left out."""
        activity: dict[str, Any] = {}
        for field, path in self._scalars:
            value = _first(path, event)
            if value is None:
                continue
            if field in STRING_FIELDS and isinstance(value, (int, float)) and not isinstance(
                value, bool
            ):
                value = str(value)  # numeric user ids: Planhat ids are strings
            activity[field] = value
        info = self._build_info(event)
        if info is not None:
            activity["info"] = info
        return activity

    def _build_info(self, event: Mapping[str, Any]) -> Any:
        keeps = None if self.properties.selects_all else self.properties.keeps
        if self._info_keys is not None:
            info: dict[str, Any] = {}
            for key, path in self._info_keys:
                if keeps is not None and not keeps(key):
                    continue
                values = path.values(event)
                if values and values[0] is not None:
                    info[key] = values[0]
            return info
        if self._info_list is None:
            return None
        info = {}
        for source in self._info_list:
            for value in source.path.values(event):
                if isinstance(value, dict):
                    prefix = source.prefix
                    if not prefix and keeps is None:
                        info.update(value)
                        continue
                    for key, item in value.items():
                        name = prefix + str(key) if prefix else str(key)
                        if keeps is None or keeps(name):
                            info[name] = item
                elif value is not None:
                    # Not an object (a bag that did not parse): keep it under its own name.
                    name = source.prefix + source.name if source.prefix else source.name
                    if keeps is None or keeps(name):
                        info[name] = value
        return info
