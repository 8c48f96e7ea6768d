"""Meltano for the e2e tests: the demo's ``.venv-meltano`` and its installed plugins, built once.

``scripts/demo.sh`` builds ``.venv-meltano`` (Meltano 4.4.1) and installs the repo's plugins into
``.meltano/`` on the suite's interpreter; every test that needs Meltano or the installed sample
tap shares them instead of installing its own (a plugin install costs a minute or more; a
``meltano`` command in a fresh project costs seconds).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
#: The real tap-amplitude-api behind the local Export-API stand-in, as the demo installed it.
SAMPLE_TAP = ROOT / ".meltano" / "extractors" / "tap-amplitude-sample" / "venv" / "bin"
SAMPLE_TAP_BIN = SAMPLE_TAP / "tap-amplitude-sample"
DEFINITION = ROOT / "plugin" / "target-planhat.yml"
#: What the sample tap writes (SCHEMA, RECORDs, STATEs), for expectations.
SAMPLE = ROOT / "data" / "sample" / "amplitude-events.singer.jsonl"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment, no MELTANO_* / TARGET_PLANHAT_* leaking in, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TARGET_PLANHAT_"))}
    env.update({"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1"})
    env.update(extra)
    return env


@functools.cache
def demo_meltano() -> Path:
    """The demo's Meltano, with the sample tap installed; built by scripts/demo.sh when missing.

    Cached: the check (and a build) happens once per test session.
    """
    if not (MELTANO.exists() and SAMPLE_TAP_BIN.exists()):
        built = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=ROOT,
            env=clean_env(PYTHON=sys.executable),
            capture_output=True,
            text=True,
            timeout=20 * 60,
            check=False,
        )
        assert built.returncode == 0, built.stderr[-6000:]
    assert MELTANO.exists() and SAMPLE_TAP_BIN.exists(), "demo.sh did not install Meltano"
    return MELTANO


def run_meltano(
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``meltano ARGS`` in ``project``; with ``check``, a non-zero exit fails showing its output."""
    result = subprocess.run(
        [str(demo_meltano()), *args],
        cwd=project,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, (
            f"meltano {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def sample_messages() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line]
