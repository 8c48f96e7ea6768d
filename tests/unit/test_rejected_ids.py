"""RejectedIds: the (event id, reason) pairs already dead-lettered, per tenant, in both stores."""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.rejected_ids import RejectedIds, event_key
from target_planhat.store import open_path
from tests.support.examples import examples
from tests.support.postgres import StoreBackend


def test_remembered_pairs_are_known_for_the_same_reason_only(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    store = store_backend.open(tmp_path)
    try:
        ids = RejectedIds(store)
        assert ids.known([("a", "no_identifier")]) == set()
        ids.remember([("a", "no_identifier"), ("b\ud800", "bad_date"), ("a", "no_identifier")])
        asked = [("a", "no_identifier"), ("a", "bad_date"), ("b\ud800", "bad_date"), ("c", "x")]
        assert ids.known(asked) == {("a", "no_identifier"), ("b\ud800", "bad_date")}
        ids.remember([("a", "no_identifier")])  # again: no error, no second row
        assert store.execute("SELECT COUNT(*) FROM tp_rejected")[0][0] == 2
    finally:
        store.close()


def test_each_tenant_has_its_own_pairs(store_backend: StoreBackend, tmp_path: Path) -> None:
    first = store_backend.open(tmp_path, tenant_token="tenant-one-1")
    second = store_backend.open(tmp_path, tenant_token="tenant-two-2")
    try:
        RejectedIds(first).remember([("a", "no_identifier")])
        assert RejectedIds(first).known([("a", "no_identifier")]) == {("a", "no_identifier")}
        assert RejectedIds(second).known([("a", "no_identifier")]) == set()
    finally:
        first.close()
        second.close()


def test_many_ids_are_asked_in_chunks(store_backend: StoreBackend, tmp_path: Path) -> None:
    store = store_backend.open(tmp_path)
    try:
        ids = RejectedIds(store)
        pairs = [(f"id-{n}", "no_identifier") for n in range(store.max_params * 2 + 5)]
        ids.remember(pairs[::2])
        assert ids.known(pairs) == set(pairs[::2])
    finally:
        store.close()


def test_pairs_older_than_the_ttl_are_pruned(store_backend: StoreBackend, tmp_path: Path) -> None:
    store = store_backend.open(tmp_path)
    try:
        ids = RejectedIds(store)
        ids.remember([("old", "no_identifier"), ("new", "no_identifier")])
        old = int(time.time()) - 8 * 86400
        store.execute(
            "UPDATE tp_rejected SET rejected_at = ? WHERE tenant = ?", (old, store.tenant)
        )
        ids.remember([("new2", "no_identifier")])
        again = RejectedIds(store, ttl_days=7)
        assert again.pruned == 2
        assert again.known([("old", "no_identifier"), ("new2", "no_identifier")]) == {
            ("new2", "no_identifier")
        }
    finally:
        store.close()


_ids = st.text(alphabet=st.characters(codec=None), max_size=12)  # lone surrogates included
_pairs = st.lists(st.tuples(_ids, st.sampled_from(["no_identifier", "bad_date", 'q"\\'])))


@settings(max_examples=examples(100), deadline=None)
@given(earlier=_pairs, later=_pairs, asked=_pairs)
def test_sqlite_one_statement_answers_as_the_plain_lists(
    earlier: list[tuple[str, str]], later: list[tuple[str, str]], asked: list[tuple[str, str]]
) -> None:
    # The fast path (each batch as one JSON parameter) against the plain ``?`` lists, which
    # PostgreSQL uses: the same rows stored, the same pairs known.
    with tempfile.TemporaryDirectory() as tmp:
        answers = []
        for one_statement in (True, False):
            store = open_path(Path(tmp) / f"{one_statement}.sqlite", "tenant-token-1")
            try:
                ids = RejectedIds(store, one_statement=one_statement)
                ids.remember(earlier)
                first = ids.known(asked + later)
                ids.remember(later)
                rows = store.execute("SELECT id, reason FROM tp_rejected ORDER BY 1, 2")
                answers.append((first, ids.known(asked + earlier), rows))
            finally:
                store.close()
    assert answers[0] == answers[1]


def _stored_id(event_id: str) -> str:
    """An event id as ``tp_rejected`` keeps it, written out plainly: the hour of a key made by
    ``event_key``, then the digest of the whole key."""
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16)
    head, separator, _ = event_id.partition("\x1f")
    hour = head if separator and len(head) == 10 and head.isascii() and head.isdigit() else ""
    return hour + digest.hexdigest()


_dates = st.one_of(
    st.builds(
        lambda d, h, rest: f"2024-03-{d:02d}T{h:02d}{rest}",
        st.integers(1, 31),
        st.integers(0, 23),
        st.sampled_from([":00:07.953Z", ":59:59.999Z", "", ":00"]),
    ),
    st.none(),
    st.integers(),
    st.text(max_size=16),
    st.just("\uff12\uff10\uff12\uff14-03-01T08:00:00Z"),  # digits, but not ASCII ones
)


@settings(max_examples=examples(300), deadline=None)
@given(event_id=_ids, date=_dates)
def test_an_event_key_leads_with_the_hour_of_a_well_formed_date_only(
    event_id: str, date: object
) -> None:
    key = event_key(event_id, date)
    assert event_key(event_id, date) == key  # a replay of the event makes the same key
    if isinstance(date, str) and re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}", date[:13]):
        assert key == f"{date[:4]}{date[5:7]}{date[8:10]}{date[11:13]}\x1f{event_id}"
    else:
        assert key == event_id


def test_keys_of_one_hour_are_stored_side_by_side_and_found_again(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    store = store_backend.open(tmp_path)  # closed by the fixture
    ids = RejectedIds(store)
    eight = [
        (event_key(f"ins-{n}", "2024-03-01T08:00:07.953Z"), "no_identifier") for n in range(50)
    ]
    nine = [(event_key(f"ins-{n}", "2024-03-01T09:30:00.000Z"), "no_identifier") for n in range(50)]
    ids.remember(nine + eight)
    rows = [r[0] for r in store.execute("SELECT id FROM tp_rejected ORDER BY id")]
    assert [r[:10] for r in rows] == ["2024030108"] * 50 + ["2024030109"] * 50
    assert sorted(rows) == sorted(_stored_id(key) for key, _ in eight + nine)
    # The same id at another hour is another event: not written before.
    other = (event_key("ins-1", "2024-03-02T08:00:00.000Z"), "no_identifier")
    assert RejectedIds(store).known([eight[1], nine[1], other]) == {eight[1], nine[1]}


def test_remember_after_known_stores_what_the_plain_hash_would(tmp_path: Path) -> None:
    """``remember`` takes the hashes ``known`` made; a pair ``known`` was not asked about is
    hashed on the spot: the rows are the same either way."""
    store = open_path(tmp_path / "ledger.sqlite", "tenant-token-1")
    try:
        ids = RejectedIds(store)
        ids.known([("a", "no_identifier"), ("b", "bad_date")])
        ids.remember([("a", "no_identifier"), ("c", "no_identifier")])  # c: not asked about
        rows = store.execute("SELECT id, reason FROM tp_rejected ORDER BY 2, 1")
        expected = [(_stored_id(i), "no_identifier") for i in ("a", "c")]
        assert sorted(rows, key=lambda r: (r[1], r[0])) == sorted(
            expected, key=lambda r: (r[1], r[0])
        )
        assert RejectedIds(store).known([("a", "no_identifier"), ("c", "no_identifier")]) == {
            ("a", "no_identifier"),
            ("c", "no_identifier"),
        }
    finally:
        store.close()
