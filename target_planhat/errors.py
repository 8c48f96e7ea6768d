"""Exceptions that cross module boundaries (the basics layer: nothing here imports the package)."""

from __future__ import annotations

import signal


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


class ConfigError(ValueError):
    """A setting that cannot work. The message starts with the setting's name.

    Raised by settings, the stores and commands; ``target.main`` exits 2 with it.
    """


class MetricError(ValueError):
    """A ``metrics`` rule that cannot work; the message names ``metrics[i].field`` (metrics.py;
    settings turns it into a ``ConfigError``)."""


class RollUpError(ValueError):
    """A ``rollup`` setting that cannot work; the message names the setting (rollup.py; settings
    turns it into a ``ConfigError``)."""


class PlanhatError(Exception):
    """A POST that finally failed (planhat.py). The message is safe to show: it never holds the
    token. The run stops with it, exit code 1."""


class PlanhatRestError(PlanhatError):
    """A list request that finally failed (planhat_rest.py). The message never holds the token.

    A ``PlanhatError``: the run stops with its message and exit code 1, like a failed POST.
    """


class PlanhatRestAuthError(PlanhatRestError):
    """401 / 403: the token is wrong or lacks the right to read; the message names the setting."""


class RejectedRecord(Exception):
    """Raised with ``on_invalid_record: fail``; the message names the record and the reason."""


class StopRequested(Exception):
    """Raised to unwind the run after SIGTERM/SIGINT (shutdown.py); carries the signal number."""

    def __init__(self, signum: int) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        super().__init__(f"stopped by {name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
