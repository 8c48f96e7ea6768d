"""The CLI's own flags beside the SDK's (``--config``, ``--about``, ``--input``): maintenance
commands that run instead of a Singer run and read no input.

Each takes the same ``--config`` as a run, so the ledger, tenant and secrets are exactly the
run's. Attached to the SDK's click command by ``TargetPlanhat.get_singer_command``; a new flag is
one more ``click.Option`` in ``OPTIONS`` and a branch in ``_dispatch``.

- ``--forget-delivered [--since ISO] [--until ISO]``: forget this tenant's acknowledged ids (all,
  or those acknowledged in a time range), so a replay re-sends them (after fixing a mapping).
- ``--migrate-ledger-from PATH``: copy this tenant's ids from an SQLite ledger file (0.1.0 or
  later) into the configured ledger, normally PostgreSQL at ``ledger_url``.
- ``--show-held``: what the hold keeps for this tenant (activities Planhat would drop until
  their ids exist: counts by reason, when the oldest was held, the top unknown ids); a JSON
  summary on stdout, a readable line on stderr. Sends nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import typing as t
from pathlib import Path

import click

from target_planhat import redact
from target_planhat.dates import to_iso_utc
from target_planhat.errors import ConfigError
from target_planhat.hold import Hold
from target_planhat.ledger import Ledger
from target_planhat.store import open_store

if t.TYPE_CHECKING:
    from target_planhat.runtime import Runtime

    class _WithRuntime(t.Protocol):
        """What a command needs of the target (TargetPlanhat; not imported: it imports this)."""

        runtime: Runtime | None

    TargetClass = t.Callable[..., _WithRuntime]

logger = logging.getLogger("target_planhat.commands")

OPTIONS = [
    click.Option(
        ["--forget-delivered"],
        is_flag=True,
        help="Forget the ids this tenant's ledger holds as delivered (all, or those acknowledged "
        "between --since and --until), so the next run re-sends them. Planhat keeps both copies "
        "of anything it already had. Reads no input.",
    ),
    click.Option(
        ["--since"],
        metavar="ISO",
        help="With --forget-delivered: only ids acknowledged at or after this time "
        "(ISO 8601; no zone means UTC).",
    ),
    click.Option(
        ["--until"],
        metavar="ISO",
        help="With --forget-delivered: only ids acknowledged before this time.",
    ),
    click.Option(
        ["--show-held"],
        is_flag=True,
        help="Show the activities held because Planhat does not know their ids yet (counts by "
        "reason, oldest held date, top unknown ids) as JSON, and exit. Sends nothing.",
    ),
    click.Option(
        ["--migrate-ledger-from"],
        metavar="PATH",
        help="Copy this tenant's delivered ids from the SQLite ledger file PATH (0.1.0 or "
        "later) into the configured ledger (ledger_url). Idempotent. Reads no input.",
    ),
]


def extend(command: click.Command, target_class: TargetClass) -> click.Command:
    """Add ``OPTIONS`` to the SDK's command; a given flag runs its command instead of a run."""
    run = command.callback
    assert run is not None
    command.params.extend(OPTIONS)

    def callback(**kwargs: t.Any) -> t.Any:
        ours = {option.name: kwargs.pop(option.name, None) for option in OPTIONS}
        return _dispatch(target_class, kwargs, ours) if any(ours.values()) else run(**kwargs)

    command.callback = callback
    return command


def _dispatch(target_class: TargetClass, sdk: dict[str, t.Any], ours: dict[str, t.Any]) -> int:
    if (ours["since"] or ours["until"]) and not ours["forget_delivered"]:
        raise click.UsageError("--since and --until go with --forget-delivered")
    chosen = [ours["forget_delivered"], ours["migrate_ledger_from"], ours["show_held"]]
    if sum(bool(flag) for flag in chosen) > 1:
        raise click.UsageError(
            "--forget-delivered, --migrate-ledger-from and --show-held: one at a time"
        )
    since = _moment("--since", ours["since"])
    until = _moment("--until", ours["until"])
    config = sdk.get("config")
    target = target_class(
        config=config.config if config else None,
        validate_config=True,
        parse_env_config=bool(config and config.parse_env),
    )
    runtime = target.runtime
    assert runtime is not None
    if ours["show_held"]:
        return _show_held(runtime)
    ledger = runtime.ledger
    if ledger is None:
        raise ConfigError("dedupe: the ledger is off (dedupe is false or dry_run is true)")
    if ours["forget_delivered"]:
        return _forget(ledger, since, until)
    return _migrate(ledger, Path(ours["migrate_ledger_from"]), runtime.settings.tenant_token)


def _moment(flag: str, text: str | None) -> float | None:
    if not text:
        return None
    try:
        iso = to_iso_utc(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _when(moment: float | None, open_end: str) -> str:
    return to_iso_utc(moment) if moment is not None else open_end


def _forget(ledger: Ledger, since: float | None, until: float | None) -> int:
    forgotten = ledger.forget(since, until)
    logger.warning(
        "Forgot %d delivered ids acknowledged from %s until %s in the ledger at %s: the next run "
        "sends them again, and Planhat keeps both copies of those it already had.",
        forgotten,
        _when(since, "the start"),
        _when(until, "now"),
        ledger.store.location,
    )
    return 0


def _migrate(ledger: Ledger, source_path: Path, tenant_token: str) -> int:
    if not source_path.is_file():
        raise ConfigError(f"--migrate-ledger-from: no ledger file at {str(source_path)!r}")
    if ledger.store.kind == "sqlite" and Path(ledger.store.location).resolve() == (
        source_path.resolve()
    ):
        raise ConfigError(
            "--migrate-ledger-from: that is the configured ledger itself; set ledger_url to "
            "the PostgreSQL ledger to move it into"
        )
    # Opening upgrades a 0.1.0 file in place first (its ids become this tenant's).
    source = Ledger(source_path, ttl_days=10**6, tenant_token=tenant_token)
    try:
        copied = ledger.copy_from(source)
    finally:
        source.close()
    logger.warning(
        "Copied %d delivered ids of this tenant from %s into the ledger at %s. The file stays "
        "(upgraded in place if it was written by 0.1.0); remove it once runs use the new ledger.",
        copied,
        source_path,
        ledger.store.location,
    )
    return 0


def _show_held(runtime: Runtime) -> int:
    """Read-only: the run's store as configured (no ids are listed, nothing is released)."""
    store = runtime.store or open_store(runtime.settings)
    try:
        summary = {"type": "planhat_held", "store": store.location, **Hold(store).summary()}
    finally:
        if store is not runtime.store:
            store.close()
    if summary["held"]:
        logger.info(
            "Held for this tenant: %d (%s); the oldest held since %s; oldest activity date %s; "
            "top unknown ids: %s",
            summary["held"],
            ", ".join(f"{k}: {v}" for k, v in summary["held_by"].items()),
            summary["oldest_held_at"],
            summary["oldest_activity_date"],
            ", ".join(
                f"{x['reason']} {x['id']!r} ({x['activities']})" for x in summary["top_unknown_ids"]
            ),
        )
    else:
        logger.info("Nothing is held for this tenant in %s", store.location)
    sys.stdout.write(redact.redact(json.dumps(summary)) + "\n")
    sys.stdout.flush()
    return 0
