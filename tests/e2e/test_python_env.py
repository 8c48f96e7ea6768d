"""scripts/python_env.sh: how demo.sh and test.sh decide to rebuild a venv, and what they say.

A venv records the interpreter that built it (version and real path, ``.interpreter``); a venv
built by another interpreter, or whose base interpreter no longer runs, does not match and is
rebuilt. Exercised through bash, as the scripts use it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_SH = ROOT / "scripts" / "python_env.sh"


def _bash(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"source '{ENV_SH}'\n{script}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_a_venv_matches_only_the_interpreter_that_built_it(tmp_path):
    venv = tmp_path / "venv"
    py = sys.executable
    built = _bash(
        f"'{py}' -m venv --without-pip '{venv}' && mark_venv '{venv}' '{py}' && "
        f"venv_matches '{venv}' '{py}' && echo same"
    )
    assert built.stdout.strip() == "same", built.stderr
    # Another interpreter built it (what PYTHON=python3.11 after a 3.12 run looks like).
    (venv / ".interpreter").write_text("3.12.1 /elsewhere/bin/python3.12\n")
    other = _bash(f"venv_matches '{venv}' '{py}' || echo rebuild")
    assert other.stdout.strip() == "rebuild"
    # Never marked (a venv from before this check, or a half-built one).
    (venv / ".interpreter").unlink()
    assert _bash(f"venv_matches '{venv}' '{py}' || echo rebuild").stdout.strip() == "rebuild"


def test_require_python_names_a_missing_interpreter():
    result = _bash("require_python demo", PYTHON="python3.99")
    assert result.returncode == 1
    expected = "demo: FAILED: PYTHON=python3.99 is not an executable on the PATH."
    assert result.stderr.strip() == expected


def test_require_python_accepts_this_one():
    result = _bash("require_python demo", PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sys.executable
