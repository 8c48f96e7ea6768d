"""Everything under tests/e2e starts the real CLI (or Meltano) as a subprocess.

Marked ``slow`` here, by directory, so ``-m "not slow"`` is the fast unit suite without a marker
in every file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
