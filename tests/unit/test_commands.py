"""``commands``: the CLI's own flags, through the real click command (``TargetPlanhat.cli``) in
click's ``CliRunner``, against a temporary SQLite ledger."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from target_planhat.hold import Hold
from target_planhat.known_ids import Unmatched
from target_planhat.ledger import Ledger
from target_planhat.settings import compile_settings
from target_planhat.store import open_store
from target_planhat.target import TargetPlanhat
from tests.support.cli import base_config, write_config
from tests.support.inprocess import isolated_cli
from tests.support.receiver import TOKEN

DAY = 86400


@pytest.fixture
def config(tmp_path: Path) -> dict:
    return base_config(tmp_path, tenant_token=TOKEN, api_url="http://127.0.0.1:9")


@pytest.fixture
def invoke(tmp_path: Path, config: dict) -> Iterator:
    def run(*flags: str, config_override: dict | None = None) -> Result:
        path = write_config(tmp_path, {**config, **(config_override or {})})
        with isolated_cli():
            return CliRunner().invoke(TargetPlanhat.cli, ["--config", str(path), *flags])

    yield run


def _ledger(config: dict) -> Ledger:
    return Ledger(config["ledger_path"], ttl_days=10**6, tenant_token=TOKEN)


def _record(config: dict, ids: list[str], days_ago: float) -> None:
    ledger = _ledger(config)
    ledger.record(ids, at=time.time() - days_ago * DAY)
    ledger.close()


def _known(config: dict, ids: list[str]) -> set[str]:
    ledger = _ledger(config)
    try:
        return ledger.known(ids)
    finally:
        ledger.close()


IDS = ["old-1", "old-2", "mid-1", "new-1"]


def _three_days(config: dict) -> None:
    _record(config, ["old-1", "old-2"], days_ago=5)
    _record(config, ["mid-1"], days_ago=3)
    _record(config, ["new-1"], days_ago=0)


# --- --forget-delivered ------------------------------------------------------------------------


def test_forget_delivered_forgets_every_id_of_the_tenant(invoke, config) -> None:
    _three_days(config)
    other = Ledger(config["ledger_path"], tenant_token="another-tenant-token")
    other.record(["old-1"])
    other.close()
    result = invoke("--forget-delivered")
    assert result.exit_code == 0, result.output
    assert _known(config, IDS) == set()
    again = Ledger(config["ledger_path"], tenant_token="another-tenant-token")
    assert again.known(["old-1"]) == {"old-1"}, "another tenant's ids stay"
    again.close()


def test_forget_delivered_between_since_and_until(invoke, config) -> None:
    _three_days(config)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4 * DAY))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1 * DAY))
    result = invoke("--forget-delivered", "--since", since, "--until", until)
    assert result.exit_code == 0, result.output
    assert _known(config, IDS) == {"old-1", "old-2", "new-1"}


def test_since_without_forget_delivered_is_a_usage_error(invoke, config) -> None:
    _three_days(config)
    result = invoke("--since", "2024-01-01")
    assert result.exit_code == 2
    assert "--since and --until go with --forget-delivered" in result.output
    assert _known(config, IDS) == set(IDS)


def test_a_bad_since_names_the_flag(invoke, config) -> None:
    _three_days(config)
    result = invoke("--forget-delivered", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in result.output
    assert _known(config, IDS) == set(IDS)


def test_two_commands_at_once_are_refused(invoke, tmp_path) -> None:
    result = invoke("--forget-delivered", "--show-held")
    assert result.exit_code == 2
    assert "one at a time" in result.output


def test_forget_delivered_without_a_ledger_is_a_config_error(invoke, config) -> None:
    result = invoke("--forget-delivered", config_override={"dedupe": False})
    assert result.exit_code != 0
    assert "dedupe: the ledger is off" in str(result.exception)


# --- --migrate-ledger-from ---------------------------------------------------------------------


def _write_0_1_0(path: Path, ids: list[str]) -> None:
    """A ledger file as 0.1.0 wrote it (one ``acked`` table, no tenant)."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("CREATE TABLE acked (id TEXT PRIMARY KEY, acked_at REAL NOT NULL) WITHOUT ROWID")
    with db:
        db.executemany("INSERT INTO acked VALUES (?, ?)", [(i, time.time()) for i in ids])
    db.close()


def test_migrate_ledger_from_copies_a_0_1_0_file_into_the_configured_ledger(
    invoke, config, tmp_path
) -> None:
    source = tmp_path / "old-ledger.sqlite"
    ids = [f"ins-{n}" for n in range(1, 31)]
    _write_0_1_0(source, ids)
    result = invoke("--migrate-ledger-from", str(source))
    assert result.exit_code == 0, result.output
    assert _known(config, ids) == set(ids)
    again = invoke("--migrate-ledger-from", str(source))  # idempotent
    assert again.exit_code == 0, again.output
    ledger = _ledger(config)
    assert ledger.count() == len(ids)
    ledger.close()


def test_migrate_ledger_from_a_missing_file_names_it(invoke, tmp_path) -> None:
    result = invoke("--migrate-ledger-from", str(tmp_path / "nope.sqlite"))
    assert result.exit_code != 0
    assert "--migrate-ledger-from: no ledger file at" in str(result.exception)
    assert "nope.sqlite" in str(result.exception)


def test_migrate_ledger_from_the_configured_ledger_itself_is_refused(invoke, config) -> None:
    _three_days(config)
    result = invoke("--migrate-ledger-from", config["ledger_path"])
    assert result.exit_code != 0
    assert "that is the configured ledger itself" in str(result.exception)
    assert _known(config, IDS) == set(IDS)


# --- --show-held -------------------------------------------------------------------------------


def test_show_held_with_nothing_held(invoke) -> None:
    result = invoke("--show-held")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["type"] == "planhat_held" and summary["held"] == 0


def test_show_held_counts_by_reason_and_names_the_top_unknown_ids(invoke, config) -> None:
    store = open_store(compile_settings(config))
    activity = b'{"externalId":"u1","action":"Login","date":"2024-01-02T00:00:00Z"}'
    Hold(store).add(
        [
            ("e1", "events", activity, "Login", Unmatched("unknown_company", "acme-9")),
            ("e2", "events", activity, "Login", Unmatched("unknown_company", "acme-9")),
            ("e3", "events", activity, "Login", Unmatched("unknown_user", "u1")),
        ]
    )
    store.close()
    result = invoke("--show-held")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["held"] == 3
    assert summary["held_by"] == {"unknown_company": 2, "unknown_user": 1}
    assert summary["top_unknown_ids"][0] == {
        "reason": "unknown_company",
        "id": "acme-9",
        "activities": 2,
    }
    assert TOKEN not in result.output
