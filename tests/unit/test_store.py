"""The store both backends share: SQL dialect, transactions, schema versions, tenant fingerprints,
and the start-up errors that name ``ledger_path`` / ``ledger_url``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from target_planhat.settings import ConfigError, compile_settings
from target_planhat.store import Store, mask_url, open_store
from tests.support.cli import base_config
from tests.support.postgres import PASSWORD, PostgresServer, StoreBackend

TABLE = (
    "CREATE TABLE IF NOT EXISTS things (tenant TEXT NOT NULL, k TEXT NOT NULL, n BIGINT NOT NULL,"
    " PRIMARY KEY (tenant, k))"
)


def test_execute_transaction_and_upsert(store_backend: StoreBackend, tmp_path: Path) -> None:
    store = store_backend.open(tmp_path)
    try:
        assert store.kind == store_backend.kind
        store.ensure_schema("things", [TABLE])
        store.executemany(
            "INSERT INTO things (tenant, k, n) VALUES (?, ?, ?)",
            [(store.tenant, f"k{i}", i) for i in range(5)],
        )
        with store.transaction():
            store.execute(
                "INSERT INTO things (tenant, k, n) VALUES (?, ?, ?) ON CONFLICT (tenant, k)"
                " DO UPDATE SET n = excluded.n",
                (store.tenant, "k1", 100),
            )
        with pytest.raises(RuntimeError), store.transaction():
            store.execute("DELETE FROM things WHERE tenant = ?", (store.tenant,))
            raise RuntimeError("rolled back")
        rows = store.execute("SELECT k, n FROM things WHERE tenant = ? ORDER BY k", (store.tenant,))
        assert rows == [("k0", 0), ("k1", 100), ("k2", 2), ("k3", 3), ("k4", 4)]
        # A literal % and a ? placeholder in one statement.
        assert store.execute("SELECT k FROM things WHERE k LIKE ? AND n = ?", ("k%", 3)) == [
            ("k3",)
        ]
    finally:
        store.close()


def test_schema_versions_apply_once(store_backend: StoreBackend, tmp_path: Path) -> None:
    store = store_backend.open(tmp_path)
    try:
        store.ensure_schema("things", [TABLE])
        store.ensure_schema("things", [TABLE])  # nothing new: nothing runs
        added = "ALTER TABLE things ADD COLUMN extra BIGINT"
        store.ensure_schema("things", [TABLE, added])
        store.ensure_schema("things", [TABLE, added])  # the ALTER would fail if run twice
        assert store.execute("SELECT version FROM tp_schema WHERE name = 'things'") == [(2,)]
    finally:
        store.close()


def test_schema_from_several_threads_and_processes_at_once(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    stores = [store_backend.open(tmp_path) for _ in range(4)]
    errors: list[BaseException] = []

    def work(store: Store) -> None:
        try:
            store.ensure_schema("things", [TABLE, "ALTER TABLE things ADD COLUMN extra BIGINT"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert errors == []


def test_tenant_is_a_stable_fingerprint_never_the_token(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    token = "a-very-secret-tenant-token"
    first = store_backend.open(tmp_path, tenant_token=token)
    again = store_backend.open(tmp_path, tenant_token=token)
    other = store_backend.open(tmp_path, tenant_token="another-tenant-token")
    try:
        assert first.tenant == again.tenant != other.tenant
        assert token not in first.tenant and len(first.tenant) == 32
        dump = repr(first.execute("SELECT key, value FROM tp_meta"))
        assert token not in dump
    finally:
        for store in (first, again, other):
            store.close()


def test_created_only_the_first_time(store_backend: StoreBackend, tmp_path: Path) -> None:
    first = store_backend.open(tmp_path)
    first.close()
    again = store_backend.open(tmp_path)
    again.close()
    assert (first.created, again.created) == (True, False)


def _postgres(server: PostgresServer) -> StoreBackend:
    database = server.new_database()
    return StoreBackend("postgres", {"ledger_url": server.url(database)}, server, database)


def test_postgres_needs_no_superuser(postgres_server: PostgresServer, tmp_path: Path) -> None:
    store = _postgres(postgres_server).open(tmp_path)
    try:
        assert store.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [
            (False,)
        ]
        assert store.execute("SELECT current_schema()") == [("target_planhat",)]
    finally:
        store.close()


def test_postgres_reconnects_after_the_server_restarts(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    store_backend = _postgres(postgres_server)
    assert store_backend.server is not None
    store = store_backend.open(tmp_path, max_retry_seconds=120)
    try:
        store.ensure_schema("things", [TABLE])
        store_backend.server.stop()
        done = threading.Event()
        result: list[object] = []

        def insert() -> None:
            try:
                result.append(
                    store.atomic(
                        lambda: store.execute(
                            "INSERT INTO things (tenant, k, n) VALUES (?, 'x', 1)", (store.tenant,)
                        )
                    )
                )
            except BaseException as exc:
                result.append(exc)
            done.set()

        thread = threading.Thread(target=insert)
        thread.start()
        store_backend.server.start()
        thread.join()
        assert result == [[]]
        assert store.execute("SELECT n FROM things") == [(1,)]
    finally:
        store.close()


def test_unusable_ledger_path_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = compile_settings(
        base_config(tmp_path, tenant_token="t" * 8, ledger_path=str(tmp_path / "dir"))
    )
    (tmp_path / "dir").mkdir()  # a folder where the file should be
    with pytest.raises(ConfigError, match=r"^ledger_path: .*dir"):
        open_store(settings)


def test_unreachable_postgres_names_ledger_url_and_masks_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{port}/db"
    config = base_config(tmp_path, tenant_token="t" * 8, ledger_url=url)
    config.pop("ledger_path")
    with pytest.raises(ConfigError) as caught:
        open_store(compile_settings(config))
    message = str(caught.value)
    assert message.startswith("ledger_url: ")
    assert PASSWORD not in message and f"someone:***@127.0.0.1:{port}" in message


def test_mask_url() -> None:
    assert mask_url("postgresql://u:p%40ss@h:5/d?sslmode=require") == (
        "postgresql://u:***@h:5/d?sslmode=require"
    )
    assert mask_url("postgres://u@h/d") == "postgres://u@h/d"


def test_both_ledger_settings_is_an_error_naming_both(tmp_path: Path) -> None:
    config = base_config(tmp_path, tenant_token="t" * 8, ledger_url="postgresql://u:p@h/d")
    with pytest.raises(ConfigError, match=r"^ledger_path, ledger_url: "):
        compile_settings(config)
