"""Exceptions that cross module boundaries (the basics layer: nothing here imports the package)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The ledger's store (SQLite file or PostgreSQL) failed and retrying did not help.

    The message names the store's location (password masked) and says what the failure means
    for the run; callers add what was being recorded.
    """
