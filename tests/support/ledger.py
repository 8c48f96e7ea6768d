"""Ledger helpers shared by the ledger's unit and end-to-end tests."""

from __future__ import annotations

import time
from pathlib import Path

from target_planhat.ledger import Ledger


def age(path: Path, ids: list[str], days: float, token: str = "") -> None:
    """Make ``ids`` look acknowledged ``days`` ago (moved to that day's table)."""
    ledger = Ledger(path, ttl_days=10**6, tenant_token=token)
    assert ledger.discard(ids) == len(ids)
    ledger.record(ids, at=time.time() - days * 86400)
    ledger.close()
