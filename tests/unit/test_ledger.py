"""The delivery ledger: dedupe across runs, pruning by ``ledger_ttl_days``, ``dedupe: false``,
and the duplicates it skipped in the delivery report (stderr JSON line and ``report_path``)."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from target_planhat.ledger import Ledger, id_key
from target_planhat.settings import compile_settings
from target_planhat.store import open_store
from tests.support.cli import base_config
from tests.support.ledger import age
from tests.support.postgres import PASSWORD, StoreBackend
from tests.support.receiver import TOKEN

# --- the Ledger class ----------------------------------------------------------------------------


def test_record_and_known(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "sub" / "ledger.sqlite")
    assert ledger.known(["a", "b"]) == set()
    ledger.record(["a", "b", "a"])
    ids = [f"id-{i}" for i in range(1200)]  # over the bound-parameter chunk of 500
    ledger.record(ids)
    assert ledger.known(["a", "c", *ids[::7]]) == {"a", *ids[::7]}
    assert ledger.count() == 1202
    ledger.close()
    again = Ledger(tmp_path / "sub" / "ledger.sqlite")
    assert again.count() == 1202 and again.pruned == 0
    again.close()


def test_prune_by_ttl_days(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record(["old-1", "old-2", "recent", "new"])
    ledger.close()
    age(path, ["old-1", "old-2"], days=8)
    age(path, ["recent"], days=6)
    ledger = Ledger(path, ttl_days=7)
    assert ledger.pruned == 2
    assert ledger.known(["old-1", "old-2", "recent", "new"]) == {"recent", "new"}
    assert ledger.prune(0.5) == 1  # "recent" is 6 days old
    ledger.close()


# --- both backends -------------------------------------------------------------------------------


def test_both_backends_record_lookup_prune_and_forget(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    ledger = Ledger(store_backend.open(tmp_path), ttl_days=7)
    ids = [f"id-{i}" for i in range(2500)]
    ledger.record(ids[:2000])
    ledger.record(ids[1000:], at=time.time() - 3 * 86400)  # half of them again, earlier
    assert ledger.known(["nope", *ids]) == set(ids)
    assert ledger.count() == 3500
    ledger.record(["old"], at=time.time() - 9 * 86400)
    assert ledger.prune(7) == 1 and ledger.known(["old"]) == set()
    # Forget what was acknowledged 4 to 2 days ago: the 1500 ids recorded "3 days ago".
    now = time.time()
    assert ledger.forget(since=now - 4 * 86400, until=now - 2 * 86400) == 1500
    assert ledger.known(ids) == set(ids[:2000])
    assert ledger.forget() == 2000 and ledger.known(ids) == set()
    ledger.store.close()


def test_ids_are_kept_as_128_bit_hashes(store_backend: StoreBackend, tmp_path: Path) -> None:
    ledger = Ledger(store_backend.open(tmp_path))
    long_id = "x" * 5000 + "\ud800"  # any length, even a lone surrogate
    ledger.record([long_id])
    table = ledger._partitions()[0]
    [(hi, lo)] = ledger.store.execute(f"SELECT hi, lo FROM {table}")
    assert all(-(2**63) <= half < 2**63 for half in (hi, lo)) and (hi, lo) == id_key(long_id)
    assert ledger.known([long_id, "x" * 5000]) == {long_id}
    ledger.store.close()


def test_tenants_sharing_one_ledger_never_see_each_others_ids(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    first = Ledger(store_backend.open(tmp_path, tenant_token="tenant-one-token"))
    second = Ledger(store_backend.open(tmp_path, tenant_token="tenant-two-token"))
    first.record(["a", "b"])
    assert second.known(["a", "b"]) == set()
    second.record(["b"])
    assert first.known(["a", "b"]) == {"a", "b"} and second.known(["a", "b"]) == {"b"}
    assert second.forget() == 1 and first.count() == 2
    for ledger in (first, second):
        ledger.store.close()


def test_a_new_empty_ledger_warns_once_naming_where_it_is(
    store_backend: StoreBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="target_planhat"):
        first = Ledger(store_backend.open(tmp_path))
        first.record(["a"])
        again = Ledger(store_backend.open(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if "new and empty" in r.getMessage()]
    assert len(warnings) == 1
    assert first.store.location in warnings[0] and "ledger_url" in warnings[0]
    if store_backend.kind == "postgres":
        assert PASSWORD not in warnings[0] and "***" in warnings[0]
    for ledger in (first, again):
        ledger.store.close()


def _write_0_1_0(path: Path, rows: list[tuple[str, float]]) -> None:
    """A ledger file exactly as 0.1.0 wrote it."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS acked (id TEXT PRIMARY KEY, acked_at REAL NOT NULL)"
        " WITHOUT ROWID"
    )
    db.execute("CREATE INDEX IF NOT EXISTS acked_at ON acked (acked_at)")
    with db:
        db.executemany("INSERT INTO acked (id, acked_at) VALUES (?, ?)", rows)
    db.close()


def test_a_0_1_0_ledger_is_migrated_in_place_with_no_id_lost(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    now = time.time()
    rows = [(f"ins-{i}", now - (i % 5) * 86400 - 1) for i in range(25_000)]
    _write_0_1_0(path, rows)
    ledger = Ledger(path, tenant_token=TOKEN)
    assert ledger.migrated == 25_000 and ledger.pruned == 0
    assert ledger.known([r[0] for r in rows]) == {r[0] for r in rows}
    assert ledger.store.tables("acked") == []
    ledger.close()
    again = Ledger(path, tenant_token=TOKEN)  # nothing left to migrate
    assert again.migrated == 0 and again.count() == 25_000
    again.close()


def test_moving_a_sqlite_ledger_into_postgres(postgres_url: str, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _write_0_1_0(path, [(f"old-{i}", time.time() - 86400) for i in range(3000)])
    config = base_config(tmp_path, tenant_token=TOKEN, ledger_url=postgres_url)
    config.pop("ledger_path")
    target = Ledger(open_store(compile_settings(config)))
    source = Ledger(path, tenant_token=TOKEN)
    source.record(["new-1"])
    assert target.copy_from(source) == 3001
    assert target.copy_from(source) == 3001  # again: idempotent
    assert target.count() == 3001
    assert target.known(["old-0", "old-2999", "new-1"]) == {"old-0", "old-2999", "new-1"}
    source.close()
    target.store.close()


def test_pruning_drops_whole_day_tables_and_leaves_the_rest_as_they_were(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Pruning costs what it drops: an expired day goes as one table, the kept ones untouched."""
    ledger = Ledger(store_backend.open(tmp_path), ttl_days=7)
    now = time.time()
    for days_ago, count in ((9, 300), (8, 200), (3, 100), (0, 50)):
        ledger.record([f"d{days_ago}-{i}" for i in range(count)], at=now - days_ago * 86400)
    before = {t: ledger._rows(t) for t in ledger._partitions()}
    assert sorted(before.values()) == [50, 100, 200, 300]
    assert ledger.prune(7) == 500
    after = {t: ledger._rows(t) for t in ledger._partitions()}
    # The two expired days are gone as tables (not emptied row by row); the others kept every id.
    assert set(after) == {t for t, n in before.items() if n in (100, 50)}
    assert after == {t: before[t] for t in after}
    assert set(ledger.store.tables(ledger._prefix)) == set(after)
    assert ledger.prune(7) == 0 and ledger._partitions() == list(after)
    ledger.store.close()


def test_a_batch_is_found_whatever_order_and_sign_its_keys_have(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Keys travel sorted as bytes (negative halves last): every one is still found."""
    ledger = Ledger(store_backend.open(tmp_path))
    ids = [f"id-{i}" for i in range(3000)]
    keys = [id_key(i) for i in ids]
    assert {k[0] < 0 for k in keys} == {True, False}
    ledger.record(ids[::2])
    assert ledger.known(ids[::-1]) == set(ids[::2])
    ledger.record(ids)  # half already there: the rest added, none twice
    assert ledger.count() == 3000 and ledger.known(ids) == set(ids)
    ledger.store.close()
