"""Run the target's CLI entry (``target._run``) inside the test process: the same click command,
config check, exit-code mapping and STATE writing as the console script, without starting one.

For unit tests of ``target``, ``sinks``, ``runtime`` and ``commands``; tests about the process
itself (signals, kill -9, stdout of a real pipe) start the console script (``tests/e2e``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from target_planhat.target import _run
from tests.support.cli import Result, write_config


@contextlib.contextmanager
def isolated_cli() -> Iterator[None]:
    """Undo what a CLI run changes in the process: the SDK adds a root log handler (bound to the
    stderr of the moment) each time its click command is built, and the target installs its own
    SIGINT/SIGTERM handlers."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    signals = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for signum, handler in signals.items():
            signal.signal(signum, handler)


def run_in_process(
    config: dict[str, Any],
    input_text: str,
    tmp_path: Path,
    *,
    extra_args: list[str] | None = None,
) -> Result:
    """``target-planhat --config ... --input ...`` in-process: its exit code, what it wrote to
    stdout (STATE lines) and to stderr (the SDK's console log and the report's JSON line)."""
    config_path = write_config(tmp_path, config)
    input_path = tmp_path / "input.jsonl"
    input_path.write_text(input_text, encoding="utf-8")
    args = ["--config", str(config_path), "--input", str(input_path), *(extra_args or [])]
    out, err = io.StringIO(), io.StringIO()
    with isolated_cli(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _run(args)
    return Result(code, out.getvalue(), err.getvalue())
