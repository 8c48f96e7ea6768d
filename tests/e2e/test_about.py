"""``--about`` and ``--help`` of the installed console script."""

from __future__ import annotations

import subprocess

from target_planhat.about import HELP
from tests.support.cli import TARGET_BIN


def test_cli_about_and_help() -> None:
    about = subprocess.run([TARGET_BIN, "--about"], capture_output=True, text=True, check=True)
    assert "  - Name: ledger_path\n" in about.stdout and "Default: 10000" in about.stdout
    helped = subprocess.run([TARGET_BIN, "--help"], capture_output=True, text=True, check=True)
    assert "Send Amplitude events to Planhat as User Activities" in helped.stdout
    assert "Execute the Singer target." not in helped.stdout
    assert HELP.split(".")[0] in " ".join(helped.stdout.split())
