"""Run (b): a do-nothing Singer SDK target. Default settings, a ``BatchSink`` whose
``process_batch`` does nothing: what the SDK itself costs per record (reading, copying, stream
maps, jsonschema validation, timestamp parsing, metrics).

``python benchmarks/noop_target.py --config cfg.json --input events.jsonl``

With ``TARGET_NOOP_BARE=1`` it is (d), the SDK's own floor: the same do-nothing sink with every
switch the SDK offers set for speed (its ``MsgSpecReader`` when msgspec is installed,
``validate_records: false`` in the config, no timestamp parsing). Nothing an SDK target does per
record can cost less than this, so it bounds how close any SDK target can get to the floor (c).
"""

from __future__ import annotations

import os
import typing as t

from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink
from singer_sdk.target_base import Target

BARE = os.environ.get("TARGET_NOOP_BARE") == "1"


class NoopSink(BatchSink):
    def process_batch(self, context: dict) -> None:
        pass


class BareSink(NoopSink):
    def _parse_timestamps_in_record(self, *args: t.Any, **kwargs: t.Any) -> None:
        return None


class NoopTarget(Target):
    name = "target-noop"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = BareSink if BARE else NoopSink


if BARE:
    try:
        from singer_sdk.contrib.msgspec import MsgSpecReader
    except ImportError:  # msgspec not installed: the SDK's default reader
        pass
    else:
        NoopTarget.message_reader_class = MsgSpecReader


if __name__ == "__main__":
    NoopTarget.cli()
