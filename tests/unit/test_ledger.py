"""The delivery ledger: dedupe across runs, pruning by ``ledger_ttl_days``, ``dedupe: false``,
and the duplicates it skipped in the delivery report (stderr JSON line and ``report_path``)."""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat import ledger as ledger_module
from target_planhat.errors import StoreError
from target_planhat.ledger import DAY, Ledger, _Batch, id_key
from target_planhat.settings import compile_settings
from target_planhat.store import open_store
from tests.support.cli import base_config
from tests.support.examples import examples
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


def test_recording_part_of_a_looked_up_batch_with_ids_it_did_not_hold(tmp_path: Path) -> None:
    # A split batch records a chunk of what known() was asked; a roll-up records its members,
    # which known() never saw: their keys are made together, and each is found as looked up.
    ledger = Ledger(tmp_path / "ledger.sqlite")
    looked = [f"id-{i}" for i in range(6)]
    dates = [f"2026-11-30T10:0{i}:00.000Z" for i in range(6)]
    assert ledger.known(looked, dates) == set()
    members = ["member-1", "member-2"]
    ledger.record([*looked[:3], *members], dates=[*dates[:3], dates[0], "not a date"])
    assert ledger.known(looked, dates) == set(looked[:3])
    assert ledger.known(members, [dates[0], "not a date"]) == set(members)
    assert ledger.count() == 5
    ledger.close()


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
    [(key,)] = ledger.store.execute(f"SELECT k FROM {table}")
    digest = hashlib.blake2b(long_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    assert key == id_key(long_id) == _plain_key(digest)
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


def test_a_batch_is_found_whatever_order_its_keys_come_in(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Keys travel sorted: every one is still found, looked up in any order."""
    ledger = Ledger(store_backend.open(tmp_path))
    ids = [f"id-{i}" for i in range(3000)]
    keys = [id_key(i) for i in ids]
    assert {k[0] for k in keys} == {"-", "0", "1", "2"}  # the digest's top two bits
    ledger.record(ids[::2])
    assert ledger.known(ids[::-1]) == set(ids[::2])
    ledger.record(ids)  # half already there: the rest added, none twice
    assert ledger.count() == 3000 and ledger.known(ids) == set(ids)
    ledger.store.close()


_DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"  # ASCII order


def _plain_key(digest: bytes) -> str:
    """A digest's key written plainly: the digest as a 22-digit number in base 64."""
    value, digits = int.from_bytes(digest, "big"), []
    for _ in range(22):
        value, digit = divmod(value, 64)
        digits.append(_DIGITS[digit])
    assert value == 0
    return "".join(reversed(digits))


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=40))
def test_keys_are_the_digests_in_base64_and_sort_as_their_text(digests: list[bytes]) -> None:
    keys = ledger_module._key_texts(digests)
    assert keys == [_plain_key(d) for d in digests]
    assert [k for _, k in sorted(zip(digests, keys, strict=True))] == sorted(keys)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY) WITHOUT ROWID")
    db.execute("INSERT OR IGNORE INTO t SELECT value FROM json_each(?)", (orjson.dumps(keys),))
    # SQLite's order is Python's: the batch is probed and inserted in the store's key order.
    assert [r[0] for r in db.execute("SELECT k FROM t ORDER BY k")] == sorted(set(keys))
    db.close()


def test_minutes_sort_in_time_order() -> None:
    """An event day's keys start with the minute (2 base-64 digits): a batch's keys are
    neighbours."""
    minutes = [ledger_module._MINUTE[f"{h:02d}:{m:02d}"] for h in range(24) for m in range(60)]
    assert minutes == sorted(minutes) and {len(m) for m in minutes} == {2}
    assert minutes == [_plain_key(bytes(15) + bytes([m // 256, m % 256]))[-2:] for m in range(1440)]


def test_rows_with_their_own_times_come_back_exactly(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Copies and the migration write each key with its own ``at`` (SQLite: key and time in
    one text per row): the extreme times come back as sent, and a key of the wrong length is
    refused rather than cut."""
    ledger = Ledger(store_backend.open(tmp_path))
    ids, dates = _dated(1500)
    ledger.record(ids[::2], dates=dates[::2])
    ledger.record(ids[:10])  # undated
    assert ledger.known(ids, dates) == set(ids[::2]) | set(ids[:10])
    table = ledger._event_table("20261130")
    keys = sorted(["--" + id_key("first"), "LU" + id_key("last")])  # 00:00 and 23:59
    extremes = [-(2**63), 2**63 - 1]
    ledger._write([(table, keys, extremes)], None)
    assert ledger.store.execute(
        f"SELECT k, at FROM {table} WHERE k IN (?, ?) ORDER BY k", tuple(keys)
    ) == list(zip(keys, extremes, strict=True))
    with pytest.raises(ValueError, match="keys of 24 characters"):
        ledger._write([(table, [id_key("undated")], [1])], None)
    ledger.store.close()


# --- ids kept by event day ----------------------------------------------------------------------


def _dated(n: int, day: str = "2026-11-30", first: int = 0) -> tuple[list[str], list[str]]:
    """``n`` insert ids with their activities' dates: one a minute from midnight of ``day``."""
    ids = [f"ins-{day}-{i}" for i in range(first, first + n)]
    dates = [f"{day}T{i // 60 % 24:02d}:{i % 60:02d}:07.250Z" for i in range(first, first + n)]
    return ids, dates


def test_dated_ids_live_in_their_event_days_table_and_are_found_there(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    ledger = Ledger(store_backend.open(tmp_path))
    monday, m_dates = _dated(1500, "2026-11-30")
    tuesday, t_dates = _dated(700, "2026-12-01")
    ledger.record(monday + tuesday, dates=m_dates + t_dates)
    tables = {t.rsplit("_", 1)[1]: ledger._rows(t) for t in ledger._partitions()}
    assert tables == {"e20261130": 1500, "e20261201": 700}
    # Both days in one lookup, in any order; found only with their own dates.
    ids, dates = tuesday[::-3] + monday[::5], t_dates[::-3] + m_dates[::5]
    assert ledger.known([*ids, "nope"], [*dates, m_dates[0]]) == set(ids)
    assert ledger.known(monday[:10], t_dates[:10]) == set()
    assert ledger.known(monday[:10]) == set(monday[:10])  # no dates: every table scanned
    ledger.record(monday, dates=m_dates)  # again: nothing added
    assert ledger.count() == 2200
    [(key,)] = ledger.store.execute(
        f"SELECT k FROM {ledger._prefix}e20261130 WHERE substr(k, 1, 2) = ?", ("-x",)
    )
    assert key == "-x" + id_key(monday[61])  # 01:01 is minute 61 of the day: 0 * 64 + 61
    ledger.store.close()


def test_ids_without_a_usable_date_are_kept_undated_and_still_found(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    ledger = Ledger(store_backend.open(tmp_path))
    ids = ["a", "b", "c", "d", "e", "f"]
    dates: list[str | None] = [
        "2026-11-30T10:00:00.000Z",
        None,
        "not a date",
        "2026-02-30T10:00:00.000Z",  # no such day
        "2026-11-30T25:00:00.000Z",  # no such minute
        "2026-11-30",
    ]
    ledger.record(ids, dates=dates)
    dated, undated = ledger._partitions()  # event days' tables first
    assert ledger._timed(dated) and not ledger._timed(undated)
    assert (ledger._rows(dated), ledger._rows(undated)) == (1, 5)  # "a" alone has a usable date
    assert ledger.known(ids, dates) == set(ids) and ledger.known(ids) == set(ids)
    ledger.store.close()


def test_an_event_days_table_goes_once_nothing_was_written_to_it_for_ttl_days(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    ledger = Ledger(store_backend.open(tmp_path), ttl_days=7)
    now = time.time()
    old, old_dates = _dated(300, "2026-01-05")
    late, late_dates = _dated(20, "2025-06-01")
    kept, kept_dates = _dated(50, "2026-01-06")
    ledger.record(old, at=now - 9 * DAY, dates=old_dates)
    ledger.record(kept, at=now - 9 * DAY, dates=kept_dates)
    ledger.record(kept[:1], at=now - 6 * DAY, dates=kept_dates[:1])  # written again since
    ledger.record(late, at=now, dates=late_dates)  # an old event, acknowledged today
    assert ledger.prune(7) == 300
    assert ledger.known(old + kept + late, old_dates + kept_dates + late_dates) == {*kept, *late}
    assert {t.rsplit("_", 1)[1] for t in ledger._partitions()} == {"e20260106", "e20250601"}
    remaining = ledger.store.execute("SELECT tbl FROM tp_ledger_last ORDER BY tbl")
    assert [r[0] for r in remaining] == sorted(ledger._partitions())
    assert ledger.prune(5) == 50 and ledger.count() == 20
    ledger.store.close()


def test_forgetting_dated_ids_by_when_they_were_acknowledged(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    ledger = Ledger(store_backend.open(tmp_path))
    now = time.time()
    ids, dates = _dated(1000, "2026-11-30")
    ledger.record(ids[:600], at=now - 3 * DAY, dates=dates[:600])
    ledger.record(ids[600:], at=now, dates=dates[600:])
    assert ledger.forget(since=now - 4 * DAY, until=now - 2 * DAY) == 600
    assert ledger.known(ids, dates) == set(ids[600:])
    assert ledger.forget() == 400 and ledger.known(ids, dates) == set()
    assert ledger.store.execute("SELECT COUNT(*) FROM tp_ledger_last")[0][0] == 0
    ledger.store.close()


def test_0_1_0_ids_are_found_by_dated_lookups_until_pruned(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _write_0_1_0(path, [("old-1", time.time() - 3 * DAY), ("old-2", time.time() - 9 * DAY)])
    ledger = Ledger(path, tenant_token=TOKEN)  # migrated, then pruned: old-2 is 9 days old
    assert ledger.migrated == 2 and ledger.pruned == 1
    ids, dates = ["old-1", "old-2", "new"], ["2026-11-27T08:00:00.000Z"] * 3
    assert ledger.known(ids, dates) == {"old-1"}
    ledger.record(["new"], dates=dates[2:])
    assert ledger.known(ids, dates) == {"old-1", "new"}
    ledger.close()


def test_copying_dated_and_undated_tables_keeps_when_each_day_was_last_written(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    source = Ledger(tmp_path / "source.sqlite", tenant_token=TOKEN)
    ids, dates = _dated(2500, "2026-11-29")
    source.record(ids, at=time.time() - 5 * DAY, dates=dates)
    source.record(["undated"])
    target = Ledger(store_backend.open(tmp_path, tenant_token="another-token"), ttl_days=7)
    assert target.copy_from(source) == 2501 and target.copy_from(source) == 2501
    assert target.known([*ids, "undated"], [*dates, None]) == {*ids, "undated"}
    assert target.prune(4) == 2500  # last written 5 days ago, as in the source
    source.close()
    target.store.close()


_PLAIN_DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2}).([01][0-9]|2[0-3]):([0-5][0-9])"


def _plain_keys(ids: list[str], dates: list[str | None]) -> tuple[dict[str, list[str]], list]:
    """What ``_Batch`` makes of a batch, one id at a time with ``re`` and ``datetime``: the
    plain version of its one-day fast path."""
    by_day: dict[str, list[str]] = {}
    undated: list[str] = []
    for activity_id, date in zip(ids, dates, strict=True):
        digest = hashlib.blake2b(activity_id.encode("utf-8", "surrogatepass"), digest_size=16)
        text = _plain_key(digest.digest())
        # Any character between the day and the time (newline too): the ledger reads neither.
        found = re.match(_PLAIN_DATE, date or "", re.DOTALL)
        try:
            assert found is not None
            day = datetime.date(*(int(found[i]) for i in (1, 2, 3)))
        except (AssertionError, ValueError):
            undated.append(text)
            continue
        minute_of_day = int(found[4]) * 60 + int(found[5])
        minute = _DIGITS[minute_of_day // 64] + _DIGITS[minute_of_day % 64]
        name = f"{day.year:04d}{day.month:02d}{day.day:02d}"
        by_day.setdefault(name, []).append(minute + text)
    return by_day, undated


_day_texts = st.sampled_from(["2026-11-30", "2026-12-01", "2024-02-29", "2026-02-29", "0001-01-01"])
_dates = st.one_of(
    st.builds(
        lambda day, h, m, rest: f"{day}T{h:02d}:{m:02d}{rest}",
        _day_texts,
        st.integers(0, 25),
        st.integers(0, 61),
        st.sampled_from([":07.250Z", ":00Z", "", ":59.999Z"]),
    ),
    st.none(),
    st.text(max_size=30),
    st.builds(lambda a, b: f"2026-11-30{a}10:00{b}", st.characters(), st.text(max_size=3)),
    st.builds(lambda a, b: f"{a[:4]}-{a[4:6]}-{b}", st.text(min_size=6, max_size=6), st.text()),
)


@settings(max_examples=examples(300))
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), _dates), max_size=40, unique_by=lambda p: p[0]
    ),
    st.booleans(),
)
def test_a_batchs_keys_are_those_of_the_plain_version(pairs, one_day: bool) -> None:
    if one_day:  # the fast path's case: every date of one day, well formed
        pairs = [
            (i, f"2026-11-30T{n % 24:02d}:{n % 60:02d}:00.000Z") for n, (i, _) in enumerate(pairs)
        ]
    ids = [p[0] for p in pairs]
    dates = [p[1] for p in pairs]
    batch = _Batch(ids, dates)
    assert (batch.by_day, batch.undated) == _plain_keys(ids, dates)


def test_a_day_written_to_after_prune_listed_it_stays(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Prune lists the stale days, then drops each under the DDL lock only if it is still
    stale: another process may have recorded into it in between."""
    ledger = Ledger(store_backend.open(tmp_path), ttl_days=7)
    other = Ledger(store_backend.open(tmp_path), ttl_days=7)  # another process, same tenant
    ids, dates = _dated(100, "2026-11-20")
    ledger.record(ids[:50], at=time.time() - 9 * DAY, dates=dates[:50])
    [table] = ledger._partitions()
    cutoff = int(time.time() - 7 * DAY)
    listed = ledger.store.execute("SELECT tbl FROM tp_ledger_last WHERE last <= ?", (cutoff,))
    assert [r[0] for r in listed] == [table]
    other.record(ids[50:], dates=dates[50:])  # between the listing and the drop
    assert ledger._drop([table], cutoff) == 0
    assert ledger.known(ids, dates) == set(ids) and ledger.prune(7) == 0
    for each in (ledger, other):
        each.store.close()


def test_a_ledger_of_the_integer_key_layout_is_named_and_can_be_forgotten(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """A development build kept keys as ``(t, hi, lo)`` integers: the lookup says what the
    ledger is and how to go on, instead of "no such column"; ``forget`` still clears it."""
    ledger = Ledger(store_backend.open(tmp_path))
    table = ledger._event_table("20261130")
    ledger.store.execute(
        f"CREATE TABLE {table} (t BIGINT NOT NULL, hi BIGINT NOT NULL, lo BIGINT NOT NULL,"
        " at BIGINT NOT NULL, PRIMARY KEY (t, hi, lo))"
    )
    ledger.store.execute(f"INSERT INTO {table} VALUES (1, 2, 3, 4)")
    ids, dates = _dated(10)
    with pytest.raises(StoreError, match="development build") as raised:
        Ledger(store_backend.open(tmp_path)).known(ids, dates)
    assert "--forget-delivered" in str(raised.value) and ledger.store.location in str(raised.value)
    assert ledger.forget() == 1
    ledger.record(ids, dates=dates)
    assert ledger.known(ids, dates) == set(ids)
    ledger.store.close()
