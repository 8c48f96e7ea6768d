"""The SDK's standard target suite, run against target-planhat in dry-run mode.

``streams: ["*"]`` sends every test stream through the whole pipeline (shapes, mapping, filters,
validation, batch). The suite's records are not Amplitude events, so most of them are rejected for
lack of an identifier and go to the dead-letter file: that is the pipeline working, and STATE must
still be relayed. Nothing is left out of the suite. The SDK tests that expect an exception
(record before schema, missing key property, invalid schema) see the SDK's own exception types,
because the target only reformats them at the CLI boundary.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from singer_sdk.testing import get_target_test_class

from target_planhat.target import TargetPlanhat

_WORK = Path(tempfile.mkdtemp(prefix="target-planhat-sdk-suite-"))

SAMPLE_CONFIG = {
    "dry_run": True,
    "streams": ["*"],
    "dry_run_path": str(_WORK / "dry-run.jsonl"),
    "dead_letter_path": str(_WORK / "rejected.jsonl"),
    "ledger_path": str(_WORK / "ledger.sqlite"),
    "mapping": {"externalId": "$.id", "action": "$.name", "date": "$.created_at"},
}

StandardTargetTests = get_target_test_class(TargetPlanhat, config=SAMPLE_CONFIG)


class TestTargetPlanhat(StandardTargetTests):  # type: ignore[misc, valid-type]
    """Standard Target Tests."""
