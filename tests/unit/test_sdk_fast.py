"""sdk_fast.py holds copies of singer-sdk code kept only for speed; they are checked against the
SDK version they were copied from, so an SDK upgrade cannot silently run stale copies."""

from __future__ import annotations

import importlib.metadata

from singer_sdk.sinks import Sink
from singer_sdk.target_base import Target

from target_planhat import sdk_fast
from target_planhat.sinks import FastValidator, PlanhatSink


def test_copies_match_the_installed_singer_sdk_version() -> None:
    installed = importlib.metadata.version("singer-sdk")
    assert installed == sdk_fast.COPIED_FROM, (
        f"singer-sdk {installed} is installed, but target_planhat/sdk_fast.py copies code from "
        f"singer-sdk {sdk_fast.COPIED_FROM} (for speed only). Compare DirectPath.process with "
        "the new Target._process_record_message, and FastStepsBatchSink's two methods with "
        "Sink._validate_and_parse and Sink._singer_validate_message; update the copies (or "
        "delete them if benchmarks/run.py shows they are worth under 10%), then set COPIED_FROM."
    )


def test_the_copied_sdk_methods_still_exist() -> None:
    """The names the copies call and replace: a rename in the SDK fails here, not mid-run."""
    for name in (
        "_get_context",
        "_remove_sdc_metadata_from_record",
        "_validate_and_parse",
        "preprocess_record",
        "_singer_validate_message",
        "tally_record_read",
        "process_record",
        "_parse_timestamps_in_record",
        "_after_process_record",
    ):
        assert callable(getattr(Sink, name, None)), name
    for name in ("_process_record_message", "drain_one", "_handle_max_record_age"):
        assert callable(getattr(Target, name, None)), name


def test_the_skipped_timestamp_step_is_a_no_op_where_validation_is_direct() -> None:
    """FastStepsBatchSink skips ``_parse_timestamps_in_record`` for a direct validator: only
    right when the sink turned that step off."""
    assert PlanhatSink.direct_validators == (FastValidator,)
    assert PlanhatSink._parse_timestamps_in_record(None) is None  # type: ignore[arg-type]
