"""The Amplitude Export-API stand-in, for tests: ``AmplitudeExport``, ``ExportRequest``.

One source, ``scripts/sample_tap/amplitude_export.py``: the demo's replayer installs it into
Meltano's plugin venv (where this repo's packages are not importable), and the tests load the same
file from here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "sample_tap" / "amplitude_export.py"
_NAME = "tests.support._amplitude_export"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    assert _spec and _spec.loader
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module  # dataclasses look their module up here
    _spec.loader.exec_module(_module)

AmplitudeExport = sys.modules[_NAME].AmplitudeExport
ExportRequest = sys.modules[_NAME].ExportRequest

__all__ = ["AmplitudeExport", "ExportRequest"]
