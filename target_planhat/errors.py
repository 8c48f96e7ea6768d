"""Exceptions that cross module boundaries (the basics layer: nothing here imports the package)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The ledger's store (SQLite file or PostgreSQL) failed and retrying did not help.

    The message names the store's location (password masked) and says what the failure means
    for the run; callers add what was being recorded.
    """


class PathError(ValueError):
    """A JSONPath that does not parse; the message names the expression.

    Raised by paths.py; mapping, filters and settings turn it into their own setting's error.
    """


class MappingError(ValueError):
    """A mapping setting that cannot work; the message names the setting (mapping.py)."""


class FilterError(ValueError):
    """An ``event_filters`` (or other glob/condition) setting that cannot work; the message
    names the setting (filters.py)."""


class InvalidActivity(ValueError):
    """An activity Planhat would drop or mangle (validate.py). ``reason`` is a stable code for
    reports; the batch turns it into a dead-letter line, a count or a stop."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RecordSchemaError(ValueError):
    """A record that fails its stream's schema (``validate_records``).

    Not the SDK's ``InvalidRecord``: the SDK logs that with a full traceback and the record
    before re-raising. Raised by ``sinks.FastValidator``; the reader and the target turn it into
    ``input line N: ...``.
    """
