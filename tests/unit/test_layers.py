"""The import layers and no import cycles (pyproject.toml [tool.importlinter]), checked in the
fast suite so every landing keeps them; scripts/test.sh runs ``lint-imports`` too.

In-process, through import-linter's own entry point (the one its CLI calls): it reads the
source with grimp and imports nothing of the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)  # the contract is read from ./pyproject.toml
    result = lint_imports(no_cache=True)
    output = capsys.readouterr().out
    assert result == 0, (
        "an import breaks the layers in pyproject.toml [tool.importlinter]; place a new module "
        f"in its layer there:\n{output[-3000:]}"
    )
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken\.", output), output[-3000:]
