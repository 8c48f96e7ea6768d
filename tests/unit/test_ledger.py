"""The delivery ledger: dedupe across runs, pruning by ``ledger_ttl_days``, ``dedupe: false``,
and the duplicates it skipped in the delivery report (stderr JSON line and ``report_path``)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from target_planhat.ledger import Ledger, id_key
from target_planhat.settings import compile_settings
from target_planhat.store import open_store
from tests.support.cli import base_config, event, run_target, singer_lines
from tests.support.postgres import PASSWORD, StoreBackend
from tests.support.receiver import TOKEN, PlanhatReceiver

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


def _age(path: Path, ids: list[str], days: float, token: str = "") -> None:
    """Make ``ids`` look acknowledged ``days`` ago (moved to that day's table)."""
    ledger = Ledger(path, ttl_days=10**6, tenant_token=token)
    assert ledger.discard(ids) == len(ids)
    ledger.record(ids, at=time.time() - days * 86400)
    ledger.close()


def test_prune_by_ttl_days(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record(["old-1", "old-2", "recent", "new"])
    ledger.close()
    _age(path, ["old-1", "old-2"], days=8)
    _age(path, ["recent"], days=6)
    ledger = Ledger(path, ttl_days=7)
    assert ledger.pruned == 2
    assert ledger.known(["old-1", "old-2", "recent", "new"]) == {"recent", "new"}
    assert ledger.prune(0.5) == 1  # "recent" is 6 days old
    ledger.close()


# --- through the CLI -----------------------------------------------------------------------------


def _config(tmp_path: Path, planhat: PlanhatReceiver, **overrides: object) -> dict:
    settings = {"batch_size_rows": 10, **overrides}
    return base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **settings)


def _run(tmp_path: Path, config: dict, numbers, **kwargs):
    records = [event(n) for n in numbers]
    result = run_target(config, singer_lines(records, state_every=5, **kwargs), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_dedupe_across_runs_and_the_report(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat)
        first = _run(tmp_path, config, range(1, 31))
        again = _run(tmp_path, config, range(1, 31))  # the same input replayed whole
        overlap = _run(tmp_path, config, range(21, 51))  # an overlapping window, like a tap
    assert set(planhat.kept_counts().values()) == {1}
    assert set(planhat.kept_counts()) == set(range(1, 51))
    assert (first.report["sent"], first.report["duplicates_skipped"]) == (30, 0)
    assert (again.report["sent"], again.report["duplicates_skipped"]) == (0, 30)
    assert again.report["requests"] == 0
    assert (overlap.report["sent"], overlap.report["duplicates_skipped"]) == (20, 10)
    # The same report in report_path, and STATE still relayed for the skipped records.
    on_disk = json.loads(Path(config["report_path"]).read_text())
    assert on_disk == overlap.report
    assert again.states[-1] == {"bookmarks": {"events": {"n": 30}}}
    assert Ledger(config["ledger_path"], tenant_token=TOKEN).count() == 50


@pytest.mark.slow
def test_dedupe_false_sends_again_and_keeps_no_ledger(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, dedupe=False)
        first = _run(tmp_path, config, range(1, 21))
        again = _run(tmp_path, config, range(1, 21))
    assert set(planhat.kept_counts().values()) == {2}
    assert again.report["sent"] == 20 and again.report["duplicates_skipped"] == 0
    assert first.report["duplicates_skipped"] == 0
    assert not Path(config["ledger_path"]).exists()


@pytest.mark.slow
def test_ledger_ttl_days_prunes_so_old_ids_are_sent_again(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, ledger_ttl_days=7)
        _run(tmp_path, config, range(1, 21))
        ledger = Path(config["ledger_path"])
        _age(
            ledger, [f"ins-{n:06d}" for n in range(1, 11)], days=8, token=TOKEN
        )  # older than the window
        again = _run(tmp_path, config, range(1, 21))
    assert again.report["ledger_pruned"] == 10
    assert (again.report["sent"], again.report["duplicates_skipped"]) == (10, 10)
    counts = planhat.kept_counts()
    assert all(counts[n] == 2 for n in range(1, 11))
    assert all(counts[n] == 1 for n in range(11, 21))


@pytest.mark.slow
def test_duplicates_within_one_input_and_id_fallbacks(tmp_path: Path) -> None:
    """``$insert_id``, else ``uuid``, else a hash of the activity; repeats in one run skipped."""
    records = [event(1), event(1), event(2), event(2, **{"$insert_id": None})]
    no_ids = event(3, **{"$insert_id": None, "uuid": None})
    records += [no_ids, dict(no_ids)]  # the same activity twice: the same hash
    records += [event(4, **{"$insert_id": None, "uuid": None}, user="user-2")]
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, batch_size_rows=3)
        result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # event 2 again without $insert_id has another id (its uuid): it is sent.
    assert planhat.kept_counts() == {1: 1, 2: 2, 3: 1, 4: 1}
    assert result.report["duplicates_skipped"] == 2
    ledger = Ledger(config["ledger_path"], tenant_token=TOKEN)
    assert {"ins-000001", "ins-000002", "uuid-000002"} <= ledger.known(
        ["ins-000001", "ins-000002", "uuid-000002"]
    )
    assert ledger.count() == 5  # 3 ids + 2 hashes


@pytest.mark.slow
def test_custom_dedupe_key(tmp_path: Path) -> None:
    records = [event(1), event(2, uuid="uuid-000001")]  # same uuid, different $insert_id
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, dedupe_key=["$.uuid"])
        result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0
    assert planhat.kept_counts() == {1: 1}
    assert result.report["duplicates_skipped"] == 1


@pytest.mark.slow
def test_every_chunk_of_a_split_batch_is_recorded(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        # ~200 bytes per activity: a batch of 20 goes out in several POSTs.
        config = _config(
            tmp_path, planhat, batch_size_rows=20, max_request_bytes=1200, max_event_bytes=1000
        )
        result = _run(tmp_path, config, range(1, 41))
        again = _run(tmp_path, config, range(1, 41))
    assert len(planhat.requests()) > 4
    assert result.report["sent"] == 40
    assert again.report["duplicates_skipped"] == 40 and again.report["requests"] == 0
    assert set(planhat.kept_counts().values()) == {1}


@pytest.mark.slow
def test_dry_run_leaves_the_ledger_alone(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        dry = base_config(tmp_path, dry_run=True)
        result = run_target(dry, singer_lines([event(n) for n in range(1, 11)]), tmp_path)
        assert result.returncode == 0
        live = _run(tmp_path, _config(tmp_path, planhat), range(1, 11))
    assert live.report["sent"] == 10 and live.report["duplicates_skipped"] == 0
    assert set(planhat.kept_counts()) == set(range(1, 11))


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
