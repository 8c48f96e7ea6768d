"""The import layers and no import cycles (pyproject.toml [tool.importlinter]), checked in the
fast suite so every landing keeps them; scripts/test.sh runs ``lint-imports`` too.

A subprocess, the one in tests/unit: it is a static check of the source (about a second), not
the CLI under test, and import-linter's in-process entry point disables every logger that
exists (``logging.config`` with ``disable_existing_loggers``), which breaks later tests that
read logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        "an import breaks the layers in pyproject.toml [tool.importlinter]; place a new module "
        f"in its layer there:\n{result.stdout[-3000:]}"
    )
