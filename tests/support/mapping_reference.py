"""The plain version of ``ActivityMapper.build``: every path through ``CompiledPath.values``,
every rule spelled out once, as the mapper was before ``build`` was specialised.

Shared by tests/unit/test_mapping.py (the property test against it) and
tests/unit/test_codegen.py (hostile settings through the generated ``build``).
"""

from __future__ import annotations

from typing import Any

from target_planhat.mapping import DEFAULT_MAPPING, NUMBER_FIELDS, STRING_FIELDS, PropertySelector
from target_planhat.paths import CompiledPath


def reference_first(path: CompiledPath, doc: Any) -> Any:
    for value in path.values(doc):
        if isinstance(value, list):
            value = next((item for item in value if item is not None), None)
        if value is not None:
            return value
    return None


class ReferenceSource:
    def __init__(self, path: CompiledPath, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self.name = path.last_key or path.expression


class ReferenceMapper:
    def __init__(
        self,
        mapping: dict[str, Any] | None,
        include: list[str] | None,
        exclude: list[str] | None,
    ) -> None:
        spec = dict(DEFAULT_MAPPING)
        spec.update(mapping or {})
        self.scalars: list[tuple[str, CompiledPath]] = []
        for field in (*STRING_FIELDS, "date", *NUMBER_FIELDS):
            expression = spec.get(field)
            if expression is None or expression == "":
                continue
            self.scalars.append((field, CompiledPath(expression)))
        self.info_list: list[ReferenceSource] | None = None
        self.info_keys: list[tuple[str, CompiledPath]] | None = None
        info = spec.get("info")
        if info is None or info == "":
            pass
        elif isinstance(info, dict):
            self.info_keys = [(str(key), CompiledPath(expr)) for key, expr in info.items()]
        else:
            self.info_list = []
            for item in [info] if isinstance(info, str) else info:
                if isinstance(item, str):
                    self.info_list.append(ReferenceSource(CompiledPath(item), ""))
                else:
                    prefix = item.get("prefix") or ""
                    self.info_list.append(ReferenceSource(CompiledPath(item["path"]), prefix))
        self.properties = PropertySelector(include, exclude)

    def build(self, event: Any) -> dict[str, Any]:
        activity: dict[str, Any] = {}
        for field, path in self.scalars:
            value = reference_first(path, event)
            if value is None:
                continue
            if (
                field in STRING_FIELDS
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                value = str(value)
            activity[field] = value
        info = self.build_info(event)
        if info is not None:
            activity["info"] = info
        return activity

    def build_info(self, event: Any) -> Any:
        keeps = None if self.properties.selects_all else self.properties.keeps
        if self.info_keys is not None:
            info: dict[Any, Any] = {}
            for key, path in self.info_keys:
                if keeps is not None and not keeps(key):
                    continue
                values = path.values(event)
                if values and values[0] is not None:
                    info[key] = values[0]
            return info
        if self.info_list is None:
            return None
        info = {}
        for source in self.info_list:
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
                    name = source.prefix + source.name if source.prefix else source.name
                    if keeps is None or keeps(name):
                        info[name] = value
        return info
