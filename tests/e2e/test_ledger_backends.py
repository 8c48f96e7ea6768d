"""The ledger through the CLI in both backends: tenants sharing a ledger, processes at once,
PostgreSQL faults, start-up errors, and the ledger commands (forget, migrate)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from target_planhat.ledger import Ledger
from tests.support.cli import (
    TARGET_BIN,
    base_config,
    event,
    run_target,
    singer_lines,
    write_config,
)
from tests.support.postgres import PASSWORD, PostgresServer, StoreBackend
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

OTHER_TOKEN = "tok-OTHER-77ab20"


def _config(tmp_path: Path, backend: StoreBackend, planhat: PlanhatReceiver, **extra: Any) -> dict:
    settings = {"batch_size_rows": 10, **extra}
    config = base_config(tmp_path, tenant_token=planhat.token, api_url=planhat.url, **settings)
    return backend.configure(config)


def _ledger(backend: StoreBackend, tmp_path: Path, token: str = TOKEN) -> Ledger:
    return Ledger(backend.open(tmp_path, tenant_token=token))


# --- start-up errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["a folder", "not a database", "parent is a file"])
def test_an_unusable_ledger_path_exits_2_naming_it(tmp_path: Path, case: str) -> None:
    if case == "a folder":
        path = tmp_path / "ledger-dir"
        path.mkdir()
    elif case == "not a database":
        path = tmp_path / "ledger.sqlite"
        path.write_bytes(b"this is no SQLite file, " * 100)
    else:
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "ledger.sqlite"
    with PlanhatReceiver() as planhat:
        config = base_config(
            tmp_path, tenant_token=TOKEN, api_url=planhat.url, ledger_path=str(path)
        )
        result = run_target(config, singer_lines([event(1)]), tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "ledger_path" in result.stderr and str(path.name) in result.stderr
    assert "Unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert planhat.requests() == [] and result.stdout == ""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgres_exits_2_before_reading_input(tmp_path: Path) -> None:
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{_closed_port()}/ledger"
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, ledger_url=url)
        config.pop("ledger_path")
        # Input that fails the run if read at all: exit 2 shows it was not.
        result = run_target(config, "this is not JSON\n", tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "ledger_url" in result.stderr and "someone:***@127.0.0.1" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert "Invalid input" not in result.stderr
    assert planhat.requests() == []


def test_ledger_url_from_the_environment(tmp_path: Path, postgres_url: str) -> None:
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        config.pop("ledger_path")
        env = {"TARGET_PLANHAT_LEDGER_URL": postgres_url}
        records = singer_lines([event(n) for n in range(1, 21)])
        first = run_target(config, records, tmp_path, env=env)
        again = run_target(config, records, tmp_path, env=env)
    assert first.returncode == 0 and again.returncode == 0, first.stderr[-2000:]
    assert again.report["duplicates_skipped"] == 20 and again.report["sent"] == 0
    assert not (tmp_path / ".target-planhat").exists()  # no SQLite file beside it
    assert PASSWORD not in first.stderr + again.stderr
    # The first run warned that its ledger was new; the second did not.
    assert "new and empty" in first.stderr and "new and empty" not in again.stderr


# --- tenants and processes -----------------------------------------------------------------------


def test_two_tenants_sharing_one_ledger_each_get_every_event(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    records = singer_lines([event(n) for n in range(1, 60)])
    with PlanhatReceiver() as one, PlanhatReceiver(token=OTHER_TOKEN) as two:
        first = run_target(_config(tmp_path, store_backend, one), records, tmp_path)
        second = run_target(_config(tmp_path, store_backend, two), records, tmp_path)
        replay = run_target(_config(tmp_path, store_backend, two), records, tmp_path)
    for result in (first, second, replay):
        assert result.returncode == 0, result.stderr[-2000:]
    assert one.kept_counts() == {n: 1 for n in range(1, 60)}
    assert two.kept_counts() == {n: 1 for n in range(1, 60)}
    assert second.report["duplicates_skipped"] == 0
    assert replay.report["duplicates_skipped"] == 59
    # The tenant is a fingerprint: neither token is anywhere in the ledger.
    ledger = _ledger(store_backend, tmp_path)
    dump = repr(ledger.store.execute("SELECT * FROM tp_tenants"))
    dump += repr(ledger.store.execute("SELECT * FROM tp_meta"))
    assert TOKEN not in dump and OTHER_TOKEN not in dump
    ledger.store.close()
    if store_backend.kind == "sqlite":
        raw = Path(store_backend.config["ledger_path"]).read_bytes()
        assert TOKEN.encode() not in raw and OTHER_TOKEN.encode() not in raw


def test_two_processes_at_once_on_one_ledger(store_backend: StoreBackend, tmp_path: Path) -> None:
    """Two pipelines (different inputs) on one ledger at the same time: all delivered."""
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, store_backend, planhat, batch_size_rows=5)
        config_path = write_config(tmp_path, config)
        inputs = [
            singer_lines([event(n) for n in range(start, start + 400)], state_every=10)
            for start in (1, 1001)
        ]
        procs = []
        for i, data in enumerate(inputs):
            work = tmp_path / f"p{i}"
            work.mkdir()
            (work / "in.jsonl").write_text(data)
            procs.append(
                subprocess.Popen(
                    [TARGET_BIN, "--config", str(config_path)],
                    stdin=open(work / "in.jsonl", "rb"),  # noqa: SIM115 - closed with the process
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=work,
                )
            )
        outcomes = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, stderr) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, stderr.decode()[-3000:]
        assert b"locked" not in stderr and b"deadlock" not in stderr.lower()
    expected = {**{n: 1 for n in range(1, 401)}, **{n: 1 for n in range(1001, 1401)}}
    assert planhat.kept_counts() == expected
    ledger = _ledger(store_backend, tmp_path)
    assert ledger.count() == 800
    ledger.store.close()


# --- PostgreSQL faults ---------------------------------------------------------------------------


def _pg_backend(server: PostgresServer) -> StoreBackend:
    database = server.new_database()
    return StoreBackend("postgres", {"ledger_url": server.url(database)}, server, database)


def _bookmarks(result_stdout: str) -> list[int]:
    return [json.loads(line)["bookmarks"]["events"]["n"] for line in result_stdout.splitlines()]


def test_postgres_stopped_during_a_run_stops_it_clearly_and_the_replay_is_exact(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The server goes down while Planhat answers a POST: that batch cannot be recorded."""
    backend = _pg_backend(postgres_server)
    stopped = threading.Event()

    def planhat_script(index: int, body: bytes) -> Reply:
        if index == 2 and not stopped.is_set():  # the third POST
            postgres_server.stop("immediate")
            stopped.set()
        return Reply()

    records = [event(n) for n in range(1, 101)]
    try:
        with PlanhatReceiver(planhat_script) as planhat:
            config = _config(tmp_path, backend, planhat, max_retry_seconds=2)
            failed = run_target(config, singer_lines(records, state_every=5), tmp_path)
            assert stopped.is_set()
            postgres_server.start()
            bookmarks = _bookmarks(failed.stdout)
            resume_from = bookmarks[-1] if bookmarks else 0
            resumed = run_target(
                config, singer_lines(records[resume_from:], state_every=5), tmp_path
            )
    finally:
        if stopped.is_set() and not postgres_server.running():
            postgres_server.start()
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr and "Unexpected" not in failed.stderr
    assert "replay may re-send" in failed.stderr and "ledger" in failed.stderr
    assert PASSWORD not in failed.stderr
    assert failed.report["unconfirmed_requests"] == 1
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # No STATE past the batch that could not be recorded.
    unrecorded = {a["info"]["n"] for a in planhat.requests()[2].activities}
    assert resume_from < min(unrecorded)
    counts = planhat.kept_counts()
    assert set(counts) == set(range(1, 101))
    duplicated = {n for n, c in counts.items() if c > 1}
    assert duplicated <= unrecorded, sorted(duplicated)  # only the batch the replay may re-send
    assert all(c <= 2 for c in counts.values())


def test_postgres_back_within_max_retry_seconds_the_run_goes_on(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    backend = _pg_backend(postgres_server)
    restarted = threading.Event()

    def planhat_script(index: int, body: bytes) -> Reply:
        if index == 2 and not restarted.is_set():
            postgres_server.stop("immediate")

            def back() -> None:
                time.sleep(1.0)
                postgres_server.start()
                restarted.set()

            threading.Thread(target=back, daemon=True).start()
        return Reply()

    records = [event(n) for n in range(1, 61)]
    with PlanhatReceiver(planhat_script) as planhat:
        config = _config(tmp_path, backend, planhat, max_retry_seconds=120)
        result = run_target(config, singer_lines(records, state_every=5), tmp_path)
    assert restarted.wait(60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reconnected" in result.stderr
    assert planhat.kept_counts() == {n: 1 for n in range(1, 61)}
    assert _bookmarks(result.stdout)[-1] == 60


# --- commands ------------------------------------------------------------------------------------


def test_forget_delivered_all_or_a_time_range(store_backend: StoreBackend, tmp_path: Path) -> None:
    records = singer_lines([event(n) for n in range(1, 31)])
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, store_backend, planhat)
        path = write_config(tmp_path, config)
        run_target(config, records, tmp_path)
        # Acknowledged before 2001: nothing to forget.
        none = run_target(
            path, "", tmp_path, extra_args=["--forget-delivered", "--until", "2001-01-01"]
        )
        skipped = run_target(config, records, tmp_path)
        recent = run_target(
            path,
            "",
            tmp_path,
            extra_args=["--forget-delivered", "--since", "2001-01-01T00:00:00Z"],
        )
        resent = run_target(config, records, tmp_path)
        everything = run_target(path, "", tmp_path, extra_args=["--forget-delivered"])
    assert none.returncode == 0 and "Forgot 0 delivered ids" in none.stderr
    assert skipped.report["sent"] == 0 and skipped.report["duplicates_skipped"] == 30
    assert recent.returncode == 0 and "Forgot 30 delivered ids" in recent.stderr
    assert "Planhat keeps both copies" in recent.stderr
    assert resent.report["sent"] == 30
    assert everything.returncode == 0 and "Forgot 30 delivered ids" in everything.stderr
    assert set(planhat.kept_counts().values()) == {2}
    assert none.stdout == recent.stdout == everything.stdout == ""


def test_forget_delivered_with_a_bad_time_names_the_flag(tmp_path: Path) -> None:
    config = base_config(tmp_path, tenant_token=TOKEN)
    result = run_target(
        config, "", tmp_path, extra_args=["--forget-delivered", "--since", "yesterday-ish"]
    )
    assert result.returncode == 2 and "--since" in result.stderr


def _write_0_1_0(path: Path, ids: list[str]) -> None:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE acked (id TEXT PRIMARY KEY, acked_at REAL NOT NULL) WITHOUT ROWID")
    db.execute("CREATE INDEX acked_at ON acked (acked_at)")
    with db:
        db.executemany("INSERT INTO acked VALUES (?, ?)", [(i, time.time() - 60) for i in ids])
    db.close()


def test_a_0_1_0_ledger_file_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _write_0_1_0(path, [event(n)["$insert_id"] for n in range(1, 21)])
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        result = run_target(config, singer_lines([event(n) for n in range(1, 31)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["duplicates_skipped"] == 20 and result.report["sent"] == 10
    assert "new and empty" not in result.stderr
    assert set(planhat.kept_counts()) == set(range(21, 31))


def test_migrate_a_sqlite_ledger_into_postgres(tmp_path: Path, postgres_url: str) -> None:
    old = tmp_path / "old-ledger.sqlite"
    _write_0_1_0(old, [event(n)["$insert_id"] for n in range(1, 41)])
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url)
        config.pop("ledger_path")
        config["ledger_url"] = postgres_url
        path = write_config(tmp_path, config)
        moved = run_target(path, "", tmp_path, extra_args=["--migrate-ledger-from", str(old)])
        again = run_target(path, "", tmp_path, extra_args=["--migrate-ledger-from", str(old)])
        result = run_target(config, singer_lines([event(n) for n in range(1, 51)]), tmp_path)
    assert moved.returncode == 0, moved.stderr[-2000:]
    assert "Copied 40 delivered ids" in moved.stderr and PASSWORD not in moved.stderr
    assert again.returncode == 0 and "Copied 40 delivered ids" in again.stderr  # idempotent
    assert result.report["duplicates_skipped"] == 40 and result.report["sent"] == 10
    assert set(planhat.kept_counts()) == set(range(41, 51))


def test_migrate_from_a_missing_file_names_the_flag(tmp_path: Path, postgres_url: str) -> None:
    config = base_config(tmp_path, tenant_token=TOKEN, ledger_url=postgres_url)
    config.pop("ledger_path")
    missing = tmp_path / "nope.sqlite"
    result = run_target(config, "", tmp_path, extra_args=["--migrate-ledger-from", str(missing)])
    assert result.returncode == 2 and "--migrate-ledger-from" in result.stderr
    assert "nope.sqlite" in result.stderr


def test_about_shows_ledger_url_as_a_secret_setting(tmp_path: Path) -> None:
    out = subprocess.run(
        [TARGET_BIN, "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    settings = json.loads(out.stdout)["settings"]["properties"]
    assert settings["ledger_url"].get("secret") is True
    assert "TARGET_PLANHAT_LEDGER_URL" in settings["ledger_url"]["description"]
