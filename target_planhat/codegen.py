"""The one code generator: straight-line Python for a per-record hot path, compiled once.

Used where it pays: on CPython a generated dict display and inline type checks run about twice
as fast as a loop over closures building the same dict (``benchmarks/README.md``), and shapes.py's
per-key-layout plan runs for every record. Everything else specialises by closures.

The rule: **no config or record text ever becomes source**. A :class:`Source` is written from
the caller's fixed fragments and names this module makes up; every value a config or a record
supplies (a key, a field name, a prefix, a path) is bound in the function's namespace under a
made-up name (``_c3``) and read from there. :meth:`Source.function` checks that before compiling:
the source may hold no quote, backslash or ``#`` (so no text literal and no comment), and every
word must be a Python keyword, a name bound here, or a word the caller declared (its arguments,
locals and helpers). A fragment built from outside text fails that check instead of running.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Source", "SourceError"]

_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_FORBIDDEN = re.compile(r"[\"'\\#]|[^\x20-\x7e\n]")
_BOUND = re.compile(r"_c[0-9]+")


class SourceError(ValueError):
    """Generated source that breaks the rule: it could hold text from outside."""


class Source:
    """The source of one function ``name(*args)`` and the namespace its code refers to.

    ``words`` are the identifiers the fragments may use besides keywords and bound names:
    arguments, locals, attribute names, builtins. Helpers passed in ``helpers`` are bound under
    their own (fixed, caller-chosen) names and may be used too.
    """

    def __init__(
        self,
        name: str,
        args: Iterable[str],
        words: Iterable[str] = (),
        helpers: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.args = tuple(args)
        self.namespace: dict[str, Any] = dict(helpers or {})
        self._words = frozenset((name, *self.args, *words, *self.namespace))
        self._lines: list[str] = []
        self._depth = 1

    def bind(self, value: Any) -> str:
        """A made-up name under which the code reads ``value``."""
        bound = f"_c{len(self.namespace)}"
        while bound in self.namespace:
            bound += "_"
        self.namespace[bound] = value
        return bound

    def line(self, text: str) -> None:
        self._lines.append("    " * self._depth + text)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """``header`` (ending in ``:``) and the lines written inside the ``with``, indented."""
        self.line(header)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @property
    def text(self) -> str:
        return "\n".join([f"def {self.name}({', '.join(self.args)}):", *self._lines])

    def check(self) -> str:
        """The source, after checking it holds nothing but fragments and made-up names."""
        text = self.text
        bad = _FORBIDDEN.search(text)
        if bad:
            raise SourceError(f"generated source holds {bad.group(0)!r}, which only text could")
        for word in _WORD.findall(text):
            if word in self._words or keyword.iskeyword(word):
                continue
            if _BOUND.fullmatch(word) and word in self.namespace:
                continue
            raise SourceError(f"generated source holds the word {word!r}, not made here")
        return text

    def function(self) -> Callable[..., Any]:
        """Compile the checked source and return the function."""
        code = compile(self.check(), f"<generated {self.name}>", "exec")
        exec(code, self.namespace)
        function: Callable[..., Any] = self.namespace[self.name]
        return function
