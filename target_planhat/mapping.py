"""Build one Planhat activity from one canonical Amplitude event, with JSONPath mappings.

The mapping is compiled once at start-up so a bad path or an unknown field fails before any input
is read, and so nothing is parsed per record: down to a ``build`` function written for it
(through codegen.py, which never lets setting text into the source).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from target_planhat.codegen import Source
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
    runs once per record, so it is Python written and compiled for this mapping at start-up
    (see ``_builder``), set per instance; ``tests/unit/test_mapping.py`` holds it to the plain
    algorithm, one loop over the compiled paths.
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
        """Write ``build`` for this mapping as straight-line Python and compile it.

        A loop over compiled paths (or closures) costs a call, a tuple and a few checks per
        field on every record; code written for this mapping does only what it needs (about
        1.2-1.6x faster, ``benchmarks/README.md``). ``dict_events`` code reads one- and two-key
        plain paths (nearly all mapping paths) with ``dict.get`` in place and hands every other
        path to ``CompiledPath.values``. Events that are not dicts get code that sends every
        path there, as plain paths only walk dicts. Written through :mod:`target_planhat.codegen`:
        keys, field names, prefixes and paths are bound, never written into the source.
        """
        out = _Writer()
        # The selection is compiled in too: `properties` is read here, not per record.
        keeps = None if self.properties.selects_all else self.properties.keeps
        if dict_events:
            with out.block("if not isinstance(event, dict):"):
                out.line(f"return {out.bind(self._builder(dict_events=False))}(event)")
        out.line("activity = {}")
        for field, path in self._scalars:
            out.scalar(field, path, field in STRING_FIELDS, inline=dict_events)
        if self._info_keys is not None:
            out.line("info = {}")
            for key, path in self._info_keys:
                if keeps is None or keeps(key):  # the same for every record: decided here
                    out.info_key(key, path, inline=dict_events)
            out.line(f"activity[{out.bind('info')}] = info")
        elif self._info_list is not None:
            out.line("info = {}")
            for source in self._info_list:
                out.info_source(source, keeps, inline=dict_events)
            out.line(f"activity[{out.bind('info')}] = info")
        out.line("return activity")
        build: Callable[[Mapping[str, Any]], dict[str, Any]] = out.function()
        return build


# Words the fragments below use besides keywords and bound names.
_WORDS = (
    "activity",
    "event",
    "value",
    "info",
    "key",
    "item",
    "name",
    "get",
    "update",
    "items",
    "isinstance",
    "type",
    "dict",
    "list",
    "str",
    "int",
    "float",
    "bool",
    "KeyError",
)


class _Writer(Source):
    """The source of one specialised ``build(event)`` (see :meth:`ActivityMapper._builder`)."""

    def __init__(self) -> None:
        super().__init__("build", ("event",), _WORDS, {"_first": _first})

    def fetch(self, path: CompiledPath, inline: bool) -> bool:
        """Set ``value`` to a plain path's match, or None; False if the path is not inlined."""
        steps = path.plain_steps
        if not inline or steps is None or not 1 <= len(steps) <= 2:
            return False
        if not all(type(step) is str for step in steps):
            return False
        self.line(f"value = event.get({self.bind(steps[0])})")
        if len(steps) == 2:
            second = self.bind(steps[1])
            self.line(f"value = value.get({second}) if isinstance(value, dict) else None")
        return True

    def scalar(self, field: str, path: CompiledPath, as_string: bool, inline: bool) -> None:
        """``activity[field]``: the first non-null match; a list gives its first non-None item."""
        target = f"activity[{self.bind(field)}]"
        if not self.fetch(path, inline):
            self.line(f"value = _first({self.bind(path)}, event)")
            self._store_scalar(target, as_string)
            return
        # One match, so no loop over matches; a str (the usual) needs no further checks.
        with self.block("if value is not None:"):
            with self.block("if type(value) is str:"):
                self.line(f"{target} = value")
            with self.block("else:"):
                # A list gives its first non-None item: nearly always the first one.
                with self.block("if type(value) is list and value and value[0] is not None:"):
                    self.line("value = value[0]")
                with self.block("elif isinstance(value, list):"):
                    with self.block("for item in value:"), self.block("if item is not None:"):
                        self.line("value = item")
                        self.line("break")
                    with self.block("else:"):
                        self.line("value = None")
                self._store_scalar(target, as_string)

    def _store_scalar(self, target: str, as_string: bool) -> None:
        with self.block("if value is not None:"):
            if as_string:  # numeric user ids: Planhat ids are strings
                with self.block(
                    "if type(value) is not str and isinstance(value, (int, float))"
                    " and not isinstance(value, bool):"
                ):
                    self.line("value = str(value)")
            self.line(f"{target} = value")

    def info_key(self, key: str, path: CompiledPath, inline: bool) -> None:
        """``info[key]``: the first match as it is (no list rule), if not null."""
        if not self.fetch(path, inline):
            self.line(f"value = {self.bind(path.values)}(event)")
            self.line("value = value[0] if value else None")
        with self.block("if value is not None:"):
            self.line(f"info[{self.bind(key)}] = value")

    def info_source(
        self, source: _InfoSource, keeps: Callable[[str], bool] | None, inline: bool
    ) -> None:
        """Merge each match of ``source`` into ``info``: objects key by key, later keys win."""
        if self.fetch(source.path, inline):
            self._merge(source, keeps)
        else:
            with self.block(f"for value in {self.bind(source.path.values)}(event):"):
                self._merge(source, keeps)

    def _merge(self, source: _InfoSource, keeps: Callable[[str], bool] | None) -> None:
        with self.block("if isinstance(value, dict):"):
            if not source.prefix and keeps is None:
                self.line("info.update(value)")
            else:
                names: dict[str, str | None] = {}
                namer = _namer(source.prefix, keeps, names)
                with self.block("for key, item in value.items():"):
                    with self.block("try:"):
                        self.line(f"name = {self.bind(names)}[key]")
                    with self.block("except KeyError:"):
                        self.line(f"name = {self.bind(namer)}(key)")
                    if keeps is None:
                        self.line("info[name] = item")
                    else:
                        with self.block("if name is not None:"):
                            self.line("info[name] = item")
        # Not an object (a bag that did not parse): kept under its own name.
        own = source.prefix + source.name if source.prefix else source.name
        if keeps is None or keeps(own):
            with self.block("elif value is not None:"):
                self.line(f"info[{self.bind(own)}] = value")


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
