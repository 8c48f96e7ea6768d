"""JSONPath expressions compiled once, with a direct route for plain paths.

jsonpath-ng's ``find()`` wraps every step in ``DatumInContext`` objects: fine once, slow when run
for a dozen paths on every event. Most mapping paths are plain chains (``$.groups.company[0]``),
so those are turned into a tuple of keys and indexes and walked directly. Anything else (filters,
wildcards, descendants, slices) goes through jsonpath-ng. Both give the same values: the property
test in ``tests/unit/test_paths.py`` holds them to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonpath_ng import jsonpath as jp
from jsonpath_ng.ext.parser import parse as _parse

from target_planhat.errors import PathError

__all__ = ["CompiledPath", "PathError", "Step"]


Step = str | int


def _plain_steps(node: jp.JSONPath) -> tuple[Step, ...] | None:
    """Return the key/index chain of a plain path, or None if the path needs jsonpath-ng."""
    if isinstance(node, jp.Root):
        return ()
    if isinstance(node, jp.Fields):
        if len(node.fields) != 1 or node.fields[0] == "*" or jp.auto_id_field is not None:
            return None
        return (node.fields[0],)
    if isinstance(node, jp.Child):
        left = _plain_steps(node.left)
        if left is None:
            return None
        right = node.right
        if isinstance(right, jp.Fields):
            tail = _plain_steps(right)
            return None if tail is None else left + tail
        if isinstance(right, jp.Index) and len(right.indices) == 1:
            index = right.indices[0]
            return (*left, index) if isinstance(index, int) else None
        return None
    return None


def _root_field(node: jp.JSONPath) -> str | None:
    """The top-level field every match of the path lies under, or None if it can be any."""
    while isinstance(node, jp.Child):
        if isinstance(node.left, jp.Root):
            node = node.right
            break
        node = node.left
    if isinstance(node, jp.Fields) and len(node.fields) == 1 and node.fields[0] != "*":
        return node.fields[0]
    return None


_MISSING = object()


def _walk(steps: tuple[Step, ...]) -> Callable[[Any], list[Any]]:
    """A function returning ``[value]`` at the end of ``steps`` in ``doc``, or ``[]``.

    One and two field names (``$.user_id``, ``$.groups.company``: nearly every mapping path)
    get straight-line functions; anything longer walks the steps.
    """
    if not steps:
        return lambda doc: [doc]
    if len(steps) == 1 and type(steps[0]) is str:
        key = steps[0]

        def one(doc: Any) -> list[Any]:
            if isinstance(doc, dict):
                value = doc.get(key, _MISSING)
                if value is not _MISSING:
                    return [value]
            return []

        return one
    if len(steps) == 2 and type(steps[0]) is str and type(steps[1]) is str:
        first, second = steps

        def two(doc: Any) -> list[Any]:
            if isinstance(doc, dict):
                value = doc.get(first, _MISSING)
                if isinstance(value, dict):
                    value = value.get(second, _MISSING)
                    if value is not _MISSING:
                        return [value]
            return []

        return two

    def walk(doc: Any) -> list[Any]:
        value = doc
        for step in steps:
            if isinstance(step, str):
                if not isinstance(value, dict):
                    return []
                value = value.get(step, _MISSING)
                if value is _MISSING:
                    return []
            else:
                if not isinstance(value, (list, tuple)):
                    return []
                if not -len(value) <= step < len(value):
                    return []
                value = value[step]
        return [value]

    return walk


class CompiledPath:
    """One JSONPath, parsed once. ``values(doc)`` returns every matched value, in order.

    ``values`` is a per-instance function (no bound method is made per call): the direct walk
    for a plain path, jsonpath-ng's ``find`` for the rest.
    """

    __slots__ = ("_expr", "expression", "plain_steps", "root_field", "values")

    values: Callable[[Any], list[Any]]

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise PathError(f"not a JSONPath: {expression!r}")
        self.expression = expression
        try:
            self._expr = _parse(expression)
        except Exception as exc:  # jsonpath-ng raises several unrelated types
            raise PathError(f"invalid JSONPath {expression!r}: {exc}") from None
        # The key/index chain of a plain path (`$.groups.company[0]` -> ("groups", "company",
        # 0)), walked without jsonpath-ng; None for any other path.
        self.plain_steps: tuple[Step, ...] | None = _plain_steps(self._expr)
        # The top-level key all matches come from (`$.groups.company` -> "groups"), or None
        # (`$..x`, `$.*`, `$[?(...)]`): which fields of a record this path can read at all.
        self.root_field: str | None = _root_field(self._expr)
        if self.plain_steps is None:
            find = self._expr.find
            self.values = lambda doc: [match.value for match in find(doc)]
        else:
            self.values = _walk(self.plain_steps)

    @property
    def is_plain(self) -> bool:
        """True when the direct route is used (no jsonpath-ng at run time)."""
        return self.plain_steps is not None

    @property
    def last_key(self) -> str | None:
        """The final field name of a plain path: a name for an unnamed match."""
        if self.plain_steps and isinstance(self.plain_steps[-1], str):
            return self.plain_steps[-1]
        return None

    def __repr__(self) -> str:
        return f"CompiledPath({self.expression!r})"
