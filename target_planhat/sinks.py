"""The batch: record -> canonical event -> activity -> filters -> validation -> batch -> Planhat.

Each step lives in its own module; this one only puts them in order, and tells ``checkpoints``
from which input position its batch holds records not yet acknowledged, and when it hands the
batch over to the sender thread.
"""

from __future__ import annotations

import hashlib
import time
import typing as t

import fastjsonschema
import orjson
from singer_sdk.exceptions import InvalidJSONSchema
from singer_sdk.sinks.core import BaseJSONSchemaValidator
from typing_extensions import override

from target_planhat.errors import RecordSchemaError, RejectedRecord
from target_planhat.metric_delivery import Seen
from target_planhat.rejected_ids import event_key
from target_planhat.rejects import describe
from target_planhat.sdk_fast import FastStepsBatchSink
from target_planhat.validate import InvalidActivity, encode_activity

if t.TYPE_CHECKING:
    from singer_sdk.target_base import Target

    from target_planhat.runtime import Runtime


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
}
_TOP_LEVEL = frozenset(
    {"type", "properties", "additionalProperties", "$schema", "description", "title"}
)
_ANNOTATIONS = frozenset({"type", "format", "description", "title", "examples", "$comment"})


def _flat_types(schema: dict[str, t.Any]) -> dict[str, frozenset[type]] | None:
    """``{property: allowed exact types}`` for a schema that only types top-level properties.

    ``None`` (no fast path) for anything more: ``required``, closed objects, nested keywords,
    ``default`` (fastjsonschema fills defaults in), formats other than date-time (which the
    validator accepts whatever it is), combinators. Amplitude taps' event schemas are this flat.
    """
    if not isinstance(schema, dict) or set(schema) - _TOP_LEVEL:
        return None
    if schema.get("type", "object") not in ("object", ["object"]):
        return None
    if schema.get("additionalProperties", True) is not True:
        return None
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return None
    types: dict[str, frozenset[type]] = {}
    for key, prop in properties.items():
        if not isinstance(prop, dict) or set(prop) - _ANNOTATIONS:
            return None
        if prop.get("format", "date-time") != "date-time":
            return None
        names = prop.get("type")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names:
            return None
        allowed: set[type] = set()
        for name in names:
            if name not in _JSON_TYPES:
                return None
            allowed.update(_JSON_TYPES[name])
        types[key] = frozenset(allowed)
    return types


class FastValidator(BaseJSONSchemaValidator):
    """The SDK's documented fastjsonschema hook: compiled once, several times faster per record."""

    def __init__(self, schema: dict[str, t.Any]) -> None:
        super().__init__(schema)
        try:
            self._validate = fastjsonschema.compile(schema, formats={"date-time": r".*"})
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise InvalidJSONSchema(f"Schema Validation Error: {exc}") from exc

        self._types = _flat_types(schema)

    @override
    def validate(self, record: dict) -> None:
        # The SDK hook, fed by get_validator: a fast accept, then fastjsonschema.
        types = self._types
        if types is not None:
            # Fast accept: every value's exact type is one its property allows. Anything else
            # (a mismatch, a subclass, an undeclared key) goes to the full validator, which
            # decides and words the error: this never accepts what fastjsonschema refuses.
            for key, value in record.items():
                allowed = types.get(key)
                if allowed is None or type(value) not in allowed:
                    break
            else:
                return
        try:
            self._validate(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise RecordSchemaError(
                f"record does not match the stream's schema: {exc.message}"
            ) from None


class PlanhatSink(FastStepsBatchSink):
    """One sink per stream. Holds encoded activities; ``process_batch`` delivers them.

    No ``max_size`` class attribute: it would shadow ``batch_size_rows`` (the SDK template trap).
    A ``BatchSink`` whose validation step runs ``FastValidator`` directly (``sdk_fast.py``).
    """

    direct_validators = (FastValidator,)

    def __init__(self, target: Target, *args: t.Any, **kwargs: t.Any) -> None:
        # The target is TargetPlanhat, which sets ``runtime`` before any sink exists; typed as
        # the SDK's Target so this layer never imports the one above it.
        self._runtime: Runtime = t.cast("Runtime", target.runtime)  # type: ignore[attr-defined]  # see above
        super().__init__(target, *args, **kwargs)
        settings = self._runtime.settings
        self._selected = settings.stream_selected(self.stream_name)
        if not self._selected:
            self.logger.info(
                "Stream '%s' is not in `streams`: its records are counted and skipped",
                self.stream_name,
            )
        self._batch_bytes = 0
        self._batch_rows = 0  # len(items) of the batch being built, kept for is_full
        # is_full runs after every record: the limits are read once (`max_size` goes through
        # the SDK's config lookups each time; both settings are fixed for the run).
        self._max_rows = self.max_size
        self._max_bytes = settings.max_request_bytes
        self._metrics = settings.metrics if settings.metrics else None
        # This sink's batch being built, as a holder in checkpoints (a sink replaced after a
        # schema change keeps its own until drain_all() hands its batch over).
        self._holder = ("batch", self.stream_name, id(self))

    @override
    def _parse_timestamps_in_record(self, *args: t.Any, **kwargs: t.Any) -> None:
        # Internal SDK step, skipped on purpose: it turns every `format: date-time` string into a
        # datetime and raises a bare ValueError (no record, no line) on one it cannot parse. Times
        # are normalised by shapes.py and checked by validate.py, where a bad one becomes a
        # `bad_date` rejection naming the record. Skipping it is also the cheaper path.
        return None

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        # The SDK's documented hook: fastjsonschema instead of jsonschema (~3/4 of a run).
        if not self.validate_schema:
            return None
        try:
            return FastValidator(self.schema)
        except InvalidJSONSchema:
            # fastjsonschema is stricter about some odd schemas than jsonschema; fall back.
            return super().get_validator()

    # --- bookkeeping for STATE -------------------------------------------------------------

    @property
    @override
    def is_full(self) -> bool:
        # Full by bytes too (max_request_bytes), and by metric observations; limits read once,
        # the batch's size from counters process_record keeps (no lookups per record).
        rows = self._batch_rows
        if rows and (rows >= self._max_rows or self._batch_bytes >= self._max_bytes):
            return True
        if self._metrics is None:
            return False
        batch = self._pending_batch
        seen = batch.get("metrics") if batch else None
        return seen is not None and len(seen) >= self._max_rows

    # --- one record ------------------------------------------------------------------------

    @override
    def process_record(self, record: dict, context: dict) -> None:
        # The SDK's per-record step: the record steps in order, the activity into the batch.
        runtime = self._runtime
        report = runtime.report
        if not self._selected:
            report.skipped_streams[self.stream_name] += 1
            return
        settings = runtime.settings
        event = settings.canonicalize(record, runtime.count_shape_problem)
        activity = settings.mapper.build(event)
        if self._metrics is not None:
            # Before any filter: a metric counts events whether their activity is sent or not.
            found = self._metrics.observe(event, activity)
            if found:
                self._observe(context, event, found)
        dropped_by = settings.filters.decide(self.stream_name, event, activity)
        if dropped_by is not None:
            report.filtered[dropped_by] += 1
            return
        report.count_missing(activity)
        try:
            body = encode_activity(activity, settings.max_event_bytes)
            if runtime.secret and runtime.secret in body:
                raise InvalidActivity("contains_secret", "the activity holds the tenant token")
        except InvalidActivity as exc:
            self._reject(record, activity, exc, event)
            return
        key = self._dedupe_id(event, body)
        items = context.get("items")
        if items is None:
            items = context["items"] = []
            runtime.checkpoints.holding(self._holder, runtime.seq, time.monotonic())
        items.append((key, body, activity["action"], runtime.seq, activity["date"]))
        self._batch_bytes += len(body) + 1
        self._batch_rows += 1

    def _observe(self, context: dict, event: dict, found: list) -> None:
        """Keep the event's metric observations in the batch, so its STATE waits for them."""
        seq = self._runtime.seq
        seen = context.get("metrics")
        if seen is None:
            seen = context["metrics"] = []
            self._runtime.checkpoints.holding(self._holder, seq, time.monotonic())
        event_id = self._event_id(event)
        seen.extend(Seen(observation, event_id, seq) for observation in found)

    def _event_id(self, event: dict) -> str:
        """The event's id for the metric counts: its dedupe key, else a hash of the event."""
        for path in self._runtime.settings.dedupe_key:
            for value in path.values(event):
                if value not in (None, ""):
                    return str(value)
        options = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
        encoded = orjson.dumps(event, option=options, default=str)
        return "sha256:" + hashlib.sha256(encoded).hexdigest()

    def _dedupe_id(self, event: dict, body: bytes) -> str:
        for path in self._runtime.settings.dedupe_key:
            for value in path.values(event):
                if value not in (None, ""):
                    return str(value)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _reject(
        self, record: dict, activity: dict, exc: InvalidActivity, event: dict | None = None
    ) -> None:
        runtime = self._runtime
        runtime.report.rejected[exc.reason] += 1
        policy = runtime.settings.on_invalid_record
        if policy == "fail":
            where = f"input line {runtime.line_number}" if runtime.line_number else "input"
            raise RejectedRecord(
                f"{where}: record {describe(record)} of stream '{self.stream_name}' is invalid: "
                f"{exc} (on_invalid_record=fail)"
            )
        if policy == "dead_letter":
            event_id = None
            if event is not None:
                # Per rejected event: try/except, cheaper than contextlib.suppress.
                try:
                    event_id = event_key(self._event_id(event), activity.get("date"))
                except (TypeError, orjson.JSONEncodeError):
                    # An event orjson cannot hash is not recognisable on a replay: written each
                    # time.
                    event_id = None
            with runtime.guard.critical():
                runtime.dead_letter.write(
                    self.stream_name,
                    exc.reason,
                    exc.detail,
                    record,
                    activity,
                    runtime.line_number,
                    event_id,
                    runtime.seq,
                )

    @override
    def _after_process_record(self, context: dict) -> None:
        # Internal SDK hook, silenced: at DEBUG it logs the whole batch context after every
        # record, so the log grows with the square of the batch size (740 MB for 3,000 events).
        return None

    # --- the batch -------------------------------------------------------------------------

    @override
    def start_drain(self) -> dict:
        # At most one batch in flight (of any stream): wait until the previous one is
        # acknowledged, or raise its failure, before this sink's bookkeeping changes.
        self._runtime.sender.wait()
        # Handed over before the SDK takes the batch away, so a signal in between cannot make
        # this batch look acknowledged.
        self._runtime.checkpoints.handed_over(self._holder)
        context = super().start_drain()
        self._batch_bytes = self._batch_rows = 0
        return context

    @override
    def process_batch(self, context: dict) -> None:
        """Hand the batch to the sender thread and return: the next batch builds meanwhile."""
        items = context.get("items") or []
        seen = context.get("metrics") or []
        if not items and not seen:
            return
        self._runtime.submit(items, seen, stream=self.stream_name)
        # The STATE after this batch waits for the dead-letter lines before it: start settling
        # them now, beside the sending, rather than all in sync() when that STATE is written.
        self._runtime.dead_letter.settle_soon()
