"""A wheel built from this checkout installs and runs on each supported Python found.

Runs scripts/check_pythons.sh once for 3.10-3.13 (pythonX.Y on the PATH, else pyenv): it builds
one wheel (failing on any build warning, e.g. setuptools' deprecated ``project.license`` table),
then per version a fresh venv, the wheel, ``target-planhat --about`` and a tiny dry run. A version
the machine does not have is skipped, with a message naming it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ("3.10", "3.11", "3.12", "3.13")


@pytest.fixture(scope="module")
def check() -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/check_pythons.sh", *VERSIONS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )


def test_the_wheel_builds_without_warnings(check):
    assert "built target_planhat-" in check.stdout, check.stdout + check.stderr[-4000:]
    assert "without warnings" in check.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_the_wheel_installs_and_runs(check, version):
    lines = [
        line for line in check.stdout.splitlines() if line.startswith(f"check_pythons: {version} ")
    ]
    assert lines, check.stdout + check.stderr[-4000:]
    if lines[0] == f"check_pythons: {version} not found: skipped":
        pytest.skip(f"Python {version} is not installed here (PATH, pyenv): not checked")
    assert re.match(
        rf"check_pythons: {re.escape(version)} ok \(Python {re.escape(version)}\.", lines[0]
    ), "\n".join(check.stdout.splitlines()[-30:])
