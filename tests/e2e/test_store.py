"""The store in a fresh interpreter: what importing the target loads."""

from __future__ import annotations

import subprocess
import sys

from target_planhat.store import PostgresStore


def test_postgres_is_imported_lazily() -> None:
    code = (
        "import sys, target_planhat.target, target_planhat.store\nprint('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert PostgresStore.kind == "postgres"
