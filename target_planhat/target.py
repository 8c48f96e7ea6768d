"""target-planhat: wiring, checkpoints and the process's exit.

Which STATE may be written is decided by ``checkpoints.py``; this module tells it where each
STATE arrived and asks it when to write. The SDK writes STATE only at the end of ``drain_all()``;
a full sink's ``drain_one`` writes none, and the 5-minute record age is its only timer. So this
target asks after every acknowledgement, and drains at the latest ``checkpoint_seconds`` after a
STATE (or a batched record) arrived.

A drain hands its batch to the sender thread (``sender.py``) and returns; the batch counts as
unacknowledged until the sender has recorded it. ``drain_all()`` (checkpoints, end of input)
waits for it before the SDK's STATE step, and a failed delivery is raised here at the next drain,
message or idle tick.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import signal
import sys
import time
import typing as t
from types import FrameType

import click
from singer_sdk.configuration._dict_config import parse_environment_config
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.target_base import Target
from typing_extensions import override

from target_planhat import about, commands, redact, sdk_fast
from target_planhat.checkpoints import Checkpoint
from target_planhat.errors import (
    ConfigError,
    PlanhatError,
    RejectedRecord,
    StopRequested,
    StoreError,
)
from target_planhat.reader import SINGER_INPUT_ERRORS, LineReader, describe_input_error
from target_planhat.runtime import Runtime
from target_planhat.settings import SCHEMA, check_config, compile_settings
from target_planhat.sinks import PlanhatSink
from target_planhat.store import mask_url


def _name_setting(error: str) -> str:
    """``"'x' is not one of [..] in config['mode']"`` -> ``"mode: 'x' is not one of [..]"``."""
    message, marker, where = error.partition(" in config[")
    if not marker:
        return error
    setting = ".".join(part.strip("'\"") for part in where.rstrip("]").split("]["))
    return f"{setting}: {message}"


class TargetPlanhat(Target):
    """Sends Amplitude events to Planhat as User Activities (the bulk analytics endpoint)."""

    name = "target-planhat"
    config_jsonschema = SCHEMA
    default_sink_class = PlanhatSink
    message_reader_class = LineReader

    #: The instance the CLI created, so ``main`` can finish it after an exception.
    current: t.ClassVar[TargetPlanhat | None] = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.runtime: Runtime | None = None
        #: Set once the run winds down after a failure or a stop: signals are only counted.
        self.finishing = False
        TargetPlanhat.current = self
        super().__init__(*args, **kwargs)
        # Drains run in this thread, one sink after another; each hands its batch to the one
        # sender thread, which delivers one batch at a time, in order.
        self.max_parallelism = 1
        self.runtime = Runtime(compile_settings(self.config), self.plugin_version or "")
        self._next_report = time.monotonic() + self.runtime.settings.checkpoint_seconds
        self._next_check = 0.0
        # The SDK's record path without its no-op steps, for streams no stream map touches.
        self._direct = sdk_fast.DirectPath(self, PlanhatSink)
        self._log_outputs()
        reader = self.message_reader
        # Before any input: Planhat's ids loaded when due, held activities released / expired.
        if isinstance(reader, LineReader):
            reader.on_idle = self._on_idle
            reader.idle_seconds = min(1.0, self.runtime.settings.checkpoint_seconds / 2)
            reader.on_start = self.runtime.start
        else:
            self.runtime.start()

    def _log_outputs(self) -> None:
        """Say at start-up which files this run may write, so nobody has to search for them."""
        settings = self._rt.settings
        outputs = []
        if settings.dry_run:
            outputs.append(f"dry run: {settings.dry_run_path}")
        if settings.on_invalid_record == "dead_letter":
            outputs.append(f"dead letter: {settings.dead_letter_path}")
        if settings.report_path:
            outputs.append(f"report: {settings.report_path}")
        if settings.dedupe and not settings.dry_run:
            where = mask_url(settings.ledger_url) if settings.ledger_url else settings.ledger_path
            outputs.append(f"ledger: {where}")
        self.logger.info("Files this run writes: %s", "; ".join(outputs) or "none")
        if settings.dry_run:
            if settings.dry_run_writes_state:
                self.logger.info(
                    "Dry run with dry_run_writes_state: STATE is written, so a later live run "
                    "with this state skips the events of this run"
                )
            else:
                self.logger.info(
                    "Dry run: no STATE is written, so a later live run still sends these events "
                    "(dry_run_writes_state is false)"
                )

    @override
    def _validate_config(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        # Internal hook, overridden so the token is masked before the SDK logs anything about
        # the config (validation messages can quote values).
        # The SDK's own CLI would catch ConfigValidationError and exit 1 with "Config validation
        # failed"; as a ConfigError it reaches main(), which names the setting and exits 2.
        redact.register(self.config.get("tenant_token"))
        redact.register(self.config.get("planhat_api_token"))
        # Unknown keys and JSON strings first: the SDK's check would name neither clearly.
        self._config = check_config(self._config, self.full_config_schema())
        try:
            return super()._validate_config(*args, **kwargs)
        except ConfigValidationError as exc:
            raise ConfigError(
                "; ".join(_name_setting(error) for error in exc.errors) or str(exc)
            ) from None

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        # The one hook for the CLI: the SDK's help says only "Execute the Singer target.";
        # the CLI's own flags live in commands.py.
        command = super().get_singer_command()
        command.help = about.HELP
        return commands.extend(command, cls)

    @classmethod
    @override
    def print_about(cls, output_format: str | None = None) -> None:
        # The SDK's text form has no descriptions or defaults, its markdown form None for
        # defaults the SDK applies without declaring them (batch_size_rows).
        print(about.render(cls._get_about_info(), output_format))

    @classmethod
    def full_config_schema(cls) -> dict[str, t.Any]:
        """This target's settings and the SDK's built-in ones (stream maps, batch_size_rows)."""
        schema = copy.deepcopy(cls.config_jsonschema)
        cls.append_builtin_config(schema)
        return schema

    @classproperty
    @override
    def _env_var_config(cls) -> dict[str, t.Any]:
        # Internal SDK hook (``--config ENV``), overridden so environment values reach
        # check_config as the strings they are: the SDK reads "yes" as true and "x" as an
        # integer crashes it; here they are parsed as strict JSON like every string setting.
        properties = cls.full_config_schema().get("properties", {})
        as_text = {"properties": {name: {"type": ["string"]} for name in properties}}
        return parse_environment_config(as_text, cls._env_var_prefix)

    @override
    def _setup_signal_handlers(self) -> None:
        # Internal hook: replace the SDK's handler, which drains from inside the signal handler.
        if sys.platform != "win32":
            signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Writes nothing: the main thread may be half-way through a log line (shutdown.py).
        # The stop is logged where it is acted on (_run, _settle_in_flight).
        if self.runtime is None:
            raise StopRequested(signum)
        if self.finishing:
            # Winding down already (STATE, report, close): raised now, the signal would cut
            # that short with a traceback. Counted: a second one abandons the POST in flight.
            self.runtime.guard.note(signum)
            return
        self.runtime.guard.on_signal(signum, frame)

    # --- messages ----------------------------------------------------------------------------

    @property
    def _rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    @override
    def _process_record_message(self, message_dict: dict) -> None:
        # Counts and the line number for the report and errors; stop, fail or checkpoint after.
        runtime = self._rt
        runtime.seq += 1
        runtime.report.received += 1
        # message_reader is a LineReader (message_reader_class); the SDK types it as its base.
        runtime.line_number = self.message_reader.line_number  # type: ignore[attr-defined]
        sink = self._direct.sink_for(message_dict.get("stream"))
        record = message_dict.get("record")
        if sink is None or type(record) is not dict:
            super()._process_record_message(message_dict)
        else:
            self._direct.process(sink, record)
        self._after_message()

    @override
    def _process_schema_message(self, message_dict: dict) -> None:
        # A SCHEMA can replace a stream's sink or its stream maps: the direct path forgets them.
        self._direct.forget()
        super()._process_schema_message(message_dict)

    @override
    def _process_state_message(self, message_dict: dict) -> None:
        # STATE timing: checkpoints learns where it arrived; it is written once acknowledged.
        before = self._latest_state
        super()._process_state_message(message_dict)
        if self._latest_state is not before and self._latest_state is not None:
            self._rt.checkpoints.state_arrived(self._rt.seq, self._latest_state)
        self._after_message()

    def _after_message(self, *, idle: bool = False) -> None:
        """Between two messages (or while the tap is quiet): stop, fail, or write STATE now due."""
        # Per message: plain attributes first, the calls only when they have something to do.
        runtime = self.runtime
        assert runtime is not None
        guard = runtime.guard
        if guard.signum is not None:
            guard.check()
        sender = runtime.sender
        if sender.failure is not None:
            sender.raise_failure()
        if runtime.checkpoints.news:
            self.write_acknowledged_state()
        now = time.monotonic()
        if idle or now >= self._next_check:
            self._checkpoint_if_due(now)

    def _on_idle(self) -> None:
        """Called while no input arrives: the tap is quiet, checkpoints must not wait for it."""
        self._after_message(idle=True)

    def _checkpoint_if_due(self, now: float) -> None:
        """Drain when a STATE or a batched activity has waited ``checkpoint_seconds``."""
        runtime = self._rt
        period = runtime.settings.checkpoint_seconds
        self._next_check = now + min(0.2, period / 4)
        oldest = runtime.checkpoints.waiting_since()
        if oldest is not None and now - oldest >= period:
            self.logger.debug("checkpoint_seconds reached: draining all sinks")
            self.drain_all()
        else:
            self._handle_max_record_age()
        if now >= self._next_report:
            self._next_report = now + period
            runtime.report.emit("running")

    # --- STATE -------------------------------------------------------------------------------

    def write_acknowledged_state(self) -> None:
        """Write the STATE ``checkpoints`` allows now, if any."""
        checkpoint = self._rt.checkpoints.writable()
        if checkpoint is not None:
            self._emit_state(checkpoint)

    @override
    def _write_state_message(self, state: dict) -> None:
        # Called by the SDK at the end of drain_all() with its newest STATE: every batch has
        # been handed over, so once the one in flight is acknowledged (its failure raises) the
        # newest STATE is what checkpoints allows.
        self._rt.sender.wait()
        self.write_acknowledged_state()

    def _emit_state(self, checkpoint: Checkpoint) -> None:
        runtime = self._rt
        settings = runtime.settings
        if settings.dry_run and not settings.dry_run_writes_state:
            # A dry run moves no bookmark, so a later live run still sends these events.
            runtime.checkpoints.written(checkpoint)
            return
        with runtime.guard.critical():
            # The lines of the records before this STATE; later ones settle later.
            runtime.dead_letter.sync(checkpoint.position)
            super()._write_state_message(checkpoint.state)
            runtime.checkpoints.written(checkpoint)
            runtime.report.states_written += 1

    @override
    def process_endofpipe(self) -> None:
        # End of input: wait for the batch in flight, settle the dead letters, final report.
        super().process_endofpipe()
        runtime = self._rt
        runtime.sender.wait()  # drain_all() waits only when there is a STATE to write
        runtime.dead_letter.sync()  # settles lines held back, so the report counts them
        runtime.report.warn_if_nothing_delivered()
        runtime.report.warn_missing_fields()
        if runtime.ledger is not None:
            settings = runtime.settings
            url = getattr(settings, "ledger_url", None)
            runtime.report.hint_if_mostly_duplicates(
                mask_url(url) if url else str(settings.ledger_path)
            )
        runtime.report.warn_if_mostly_held(dry_run=runtime.settings.dry_run)
        runtime.report.emit("succeeded")
        # The run is over: its files, store connection and sender thread go now, not only when
        # the CLI exits (the SDK's test runner and in-process callers end with this call).
        self.close()

    def finish_failed(self, status: str) -> None:
        """After a failure or a signal: STATE for what was acknowledged, then the report."""
        if self.runtime is None:
            return
        self.finishing = True
        self._settle_in_flight()
        with contextlib.suppress(StopRequested):
            self.write_acknowledged_state()
        self.runtime.report.emit(status)

    def _settle_in_flight(self) -> None:
        """Let the batch in flight finish and be recorded, as if it had been sent synchronously.

        The sender stops at its next step once a signal arrived, so after a first signal this
        waits for at most the POST in flight (bounded by ``request_timeout``) and its ledger
        commit. A further signal abandons the POST: its connection is cut, and only the ledger
        commit of an answer already in hand is still waited for.
        """
        runtime = self._rt
        guard = runtime.guard
        abandoned = False

        def abandon_on_a_second_signal() -> None:
            # Polled: while the run winds down, signals are only counted (_on_signal), never
            # raised here; and at every poll, since a POST may start just after a cut (abandon
            # is idempotent).
            nonlocal abandoned
            if guard.signals < 2:
                return
            if not abandoned:
                abandoned = True
                self.logger.warning(
                    "Received signal %d again: abandoning the POST in flight (counted in "
                    "unconfirmed_requests)",
                    guard.signum,
                )
            runtime.abandon()

        runtime.sender.wait_idle(check=abandon_on_a_second_signal)
        try:
            runtime.sender.raise_failure()
        except StopRequested:
            pass
        except Exception as exc:  # the run already failed for another reason: say this too
            self.logger.error("The batch in flight failed too: %s", redact.redact(str(exc)))

    def close(self) -> None:
        self.finishing = True
        if self.runtime is not None:
            self.runtime.close()


def _finish(status: str) -> None:
    target = TargetPlanhat.current
    if target is not None:
        target.finish_failed(status)


def _run(argv: list[str] | None) -> int:
    """Run the CLI; map every outcome to an exit code and one clear message."""
    log = logging.getLogger("target-planhat")
    TargetPlanhat.current = None
    try:
        result = TargetPlanhat.cli.main(args=argv, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ConfigError as exc:
        log.error("Configuration error: %s", exc)
        return 2
    except ConfigValidationError as exc:
        details = "; ".join(getattr(exc, "errors", []) or []) or str(exc)
        log.error("Configuration error: %s", redact.redact(details))
        return 2
    except StopRequested as exc:
        log.warning(
            "Received signal %d: stopping; the batch in flight is let finish and recorded "
            "(a second signal abandons it)",
            exc.signum,
        )
        _finish("stopped")
        log.warning("Stopped by signal %d; STATE covers only what Planhat acknowledged", exc.signum)
        return exc.exit_code
    except SINGER_INPUT_ERRORS as exc:
        _finish("failed")
        reader = TargetPlanhat.current.message_reader if TargetPlanhat.current else None
        line = getattr(reader, "line_number", 0)
        log.error("Invalid input: %s", redact.redact(describe_input_error(exc, line)))
        return 1
    except (PlanhatError, RejectedRecord, StoreError) as exc:
        _finish("failed")
        log.error("%s", exc)
        return 1
    except Exception as exc:
        _finish("failed")
        log.debug("Unexpected error", exc_info=True)
        message = redact.redact(str(exc)) or "(no message)"
        log.error("Unexpected %s: %s", type(exc).__name__, message)
        return 1
    finally:
        if TargetPlanhat.current is not None:
            TargetPlanhat.current.close()


#: Young-generation collections every this many new container objects (Python's default: 700).
#: Each batch keeps ~10,000 items alive until Planhat acknowledges it, so at the default the
#: collector runs hundreds of times a run only to find them still alive.
_GC_YOUNG_THRESHOLD = 10_000


def main(argv: list[str] | None = None) -> None:
    """Console script ``target-planhat``."""
    redact.install()
    # What the imports created lives until exit: frozen, it is not traversed again by every
    # full collection. Freed objects still go at once (reference counting); only cyclic garbage
    # waits for a collection, and stays bounded by the threshold.
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.exit(_run(argv))
