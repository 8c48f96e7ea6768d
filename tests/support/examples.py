"""How many examples a hypothesis property test runs: all of them in the whole suite (what CI
runs, ``bash scripts/test.sh``), a tenth in the quick run (``-m "not slow"``).

``tests/conftest.py`` chooses once, before any test module is imported; a test that sets its own
count writes ``@settings(max_examples=examples(N))`` so the quick run scales it too. Force either
with ``--hypothesis-profile full`` or ``--hypothesis-profile quick``.
"""

from __future__ import annotations

from hypothesis import settings

#: Share of each test's examples in the quick run, and the fewest it runs.
QUICK_SHARE = 0.1
QUICK_MIN = 10

settings.register_profile("full")  # hypothesis' defaults, and every test's own count
settings.register_profile("quick", max_examples=QUICK_MIN)

_share = 1.0


def use(profile: str) -> None:
    """Load ``profile`` ("full" or "quick") and scale ``examples()`` to it."""
    global _share
    _share = QUICK_SHARE if profile == "quick" else 1.0
    settings.load_profile(profile)


def examples(n: int) -> int:
    """``n`` in the full suite; ``QUICK_SHARE`` of it (at least ``QUICK_MIN``) in a quick run."""
    if _share >= 1.0:
        return n
    return min(n, max(QUICK_MIN, round(n * _share)))
