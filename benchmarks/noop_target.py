"""Run (b): a do-nothing Singer SDK target. Default settings, a ``BatchSink`` whose
``process_batch`` does nothing: what the SDK itself costs per record (reading, copying, stream
maps, jsonschema validation, timestamp parsing, metrics).

``python benchmarks/noop_target.py --config cfg.json --input events.jsonl``
"""

from __future__ import annotations

from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink
from singer_sdk.target_base import Target


class NoopSink(BatchSink):
    def process_batch(self, context: dict) -> None:
        pass


class NoopTarget(Target):
    name = "target-noop"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = NoopSink


if __name__ == "__main__":
    NoopTarget.cli()
