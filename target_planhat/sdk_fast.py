"""Speed-only copies of singer-sdk internals, fenced in one place.

Each piece repeats a part of singer-sdk's record path with steps left out that change nothing
for this target's records. None is needed for correctness: without them the SDK's own path runs,
about 15% slower (benchmarks/README.md, "SDK fast path"). Copies drift as the SDK changes, so
``tests/unit/test_sdk_fast.py`` fails on any singer-sdk other than :data:`COPIED_FROM`: compare
each copy with the new SDK's method named in its docstring, update or delete it, then move
:data:`COPIED_FROM`. ``tests/e2e/test_record_path.py`` runs both paths.

Nothing here imports the package: the target and the sink pass in what they are.
"""

from __future__ import annotations

import typing as t

from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks import BatchSink, Sink
from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.target_base import Target

COPIED_FROM = "0.54.9"
"""The singer-sdk version every copy below was taken from."""


class DirectPath:
    """The record path for streams no stream map touches: the SDK's, minus its no-op steps."""

    def __init__(self, target: Target, sink_class: type[Sink]) -> None:
        self._target = target
        self._sink_class = sink_class
        # stream name -> its sink when the record path may be shortened, else None.
        self._sinks: dict[str, Sink | None] = {}

    def forget(self) -> None:
        """After a SCHEMA message: it can replace a stream's sink or its stream maps."""
        self._sinks.clear()

    def sink_for(self, stream: object) -> Sink | None:
        """The stream's sink if its records may skip the SDK's stream-map step, else None."""
        if type(stream) is not str:
            return None
        try:
            return self._sinks[stream]
        except KeyError:
            sink = self._sinks[stream] = self._direct_sink(stream)
            return sink

    def _direct_sink(self, stream: str) -> Sink | None:
        """Only when no stream map touches the stream (one identity map, same name, no
        flattening) and no ``_sdc`` metadata is added: then the SDK's copy and transform of each
        record are no-ops, and the rest of its record path is repeated in :meth:`process`.
        """
        maps = self._target.mapper.stream_maps.get(stream) or []
        if len(maps) != 1:
            return None
        only = maps[0]
        if type(only) is not SameRecordTransform or only.stream_alias != stream:
            return None
        if only.flattening_enabled:
            return None
        sink = self._target._sinks_active.get(stream)
        if type(sink) is not self._sink_class or sink.include_sdc_metadata_properties:
            return None
        return sink

    def process(self, sink: Sink, record: dict) -> None:
        """Copy of ``Target._process_record_message`` for one identity map, without its
        per-record ``copy.copy``, map transform and sink lookup (they change nothing for such a
        stream, see :meth:`_direct_sink`) and without ``_after_process_record`` (the sink's is
        silenced) and ``_handle_max_record_age`` (the target checks record age on its own timer).
        """
        context = sink._get_context(record)
        sink._remove_sdc_metadata_from_record(record)
        sink._validate_and_parse(record)
        record = sink.preprocess_record(record, context)
        sink._singer_validate_message(record)
        sink.tally_record_read()
        sink.process_record(record, context)
        sink.record_counter_metric.increment()
        if sink.is_full:
            self._target.logger.info(
                "Target sink for '%s' is full. Current size is '%s'. Draining...",
                sink.stream_name,
                sink.current_size,
            )
            self._target.drain_one(sink)


class FastStepsBatchSink(BatchSink):
    """A ``BatchSink`` with two of the SDK's per-record steps done without their overhead."""

    #: Validators that raise their own error, never the SDK's ``InvalidRecord``: the SDK's
    #: try/except and logging around them do nothing, so :meth:`_validate_and_parse` calls them
    #: directly. A subclass naming one must also make ``_parse_timestamps_in_record`` a no-op,
    #: since that step is then skipped.
    direct_validators: t.ClassVar[tuple[type, ...]] = ()

    @override
    def _validate_and_parse(self, record: dict) -> dict:
        """Copy of ``Sink._validate_and_parse`` for a direct validator: validate, and skip the
        timestamp parsing the subclass turned off (whose arguments the SDK would still look up
        for every record)."""
        validator = self._validator
        if type(validator) in self.direct_validators:
            validator.validate(record)  # type: ignore[union-attr]  # in direct_validators: not None
            return record
        return super()._validate_and_parse(record)

    @override
    def _singer_validate_message(self, record: dict) -> None:
        """Copy of ``Sink._singer_validate_message``: the same key-property check without a
        generator per record; when a key is missing, the SDK's method raises its own error."""
        for key in self._key_properties:
            if key not in record:
                super()._singer_validate_message(record)
                return
