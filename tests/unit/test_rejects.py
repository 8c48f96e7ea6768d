"""DeadLetterFile: lines written before (by event id and reason) are counted, not written again."""

from __future__ import annotations

import datetime as dt
import functools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_planhat import rejects
from target_planhat.rejected_ids import RejectedIds
from target_planhat.rejects import DeadLetterFile
from target_planhat.store import Store, open_path
from tests.support.examples import examples


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store in ``tmp_path`` for the dead-letter file's memory, closed afterwards."""
    opened = open_path(tmp_path / "s.sqlite", "tenant-token-1")
    yield opened
    opened.close()


class _Broken:
    """A store that cannot answer: every line must still be written."""

    def known(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        raise OSError("disk gone")

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        raise AssertionError("never asked to remember what it could not check")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _write(
    dead: DeadLetterFile,
    event_id: str | None,
    reason: str = "no_identifier",
    position: int | None = None,
) -> None:
    dead.write("events", reason, "why", {"id": event_id}, {"action": "a"}, 1, event_id, position)


def test_a_replayed_rejection_is_counted_not_written_again(tmp_path: Path) -> None:
    path = tmp_path / "rejected.jsonl"
    store = open_path(tmp_path / "ledger.sqlite", "tenant-token-1")
    again: Counter[str] = Counter()
    try:
        first = DeadLetterFile(path, RejectedIds(store), lambda reason: again.update([reason]))
        for event_id in ("a", "b", "a"):  # "a" twice in one run: one line
            _write(first, event_id)
        first.sync()
        assert [line["record"]["id"] for line in _lines(path)] == ["a", "b"]
        first.close()

        second = DeadLetterFile(path)
        second.remember_in(RejectedIds(store), lambda reason: again.update([reason]))
        _write(second, "a")
        _write(second, "a", reason="bad_date")  # another reason: a new line
        _write(second, "c")
        _write(second, None)  # no id: always written
        second.close()  # settles what is pending
    finally:
        store.close()
    assert [(x["record"]["id"], x["reason"]) for x in _lines(path)] == [
        ("a", "no_identifier"),
        ("b", "no_identifier"),
        ("a", "bad_date"),
        ("c", "no_identifier"),
        (None, "no_identifier"),
    ]
    assert again == {"no_identifier": 2}


def test_lines_are_written_when_the_store_cannot_answer(tmp_path: Path) -> None:
    path = tmp_path / "rejected.jsonl"
    dead = DeadLetterFile(path, _Broken(), lambda reason: None)
    _write(dead, "a")
    assert _lines(path) == []  # held back until settled
    dead.sync()
    assert [line["record"]["id"] for line in _lines(path)] == ["a"]
    dead.close()


def test_without_memory_every_line_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rejected.jsonl"
    dead = DeadLetterFile(path)
    _write(dead, "a")
    _write(dead, "a")
    dead.sync()
    assert len(_lines(path)) == 2
    dead.close()


class _Slow(RejectedIds):
    """Answers a moment later: a settle in its thread is still running at the next writes."""

    def known(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        time.sleep(0.002)  # widens the window for ordering mistakes; nothing waits for it
        return super().known(pairs)


def _count(counter: Counter[str], reason: str) -> None:
    counter[reason] += 1


# One step of a run: a rejected line (event id or None, reason), then a sync (before a STATE)
# when the third is 0, a settle_soon (a batch handed over) when it is 1, a STATE's sync of the
# lines up to two steps back when it is 2.
_steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", None]),
        st.sampled_from(["r1", "r2"]),
        st.integers(0, 7),
    ),
    max_size=40,
)


# The monkeypatch is shared by the examples of one test (it sets the same value each time) and
# undone after it, so no other test sees the small _PENDING_MAX.
_SHARED_PATCH = [HealthCheck.function_scoped_fixture]


@settings(max_examples=examples(100), deadline=None, suppress_health_check=_SHARED_PATCH)
@given(earlier=_steps, steps=_steps)
def test_settling_in_a_thread_writes_what_settling_in_place_writes(
    earlier: list[tuple[str | None, str, int]],
    steps: list[tuple[str | None, str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fast path (each full batch settled in a thread of its own) against the plain one
    # (settled in the writing thread): the same lines in the same order, the same counts, over
    # two runs (the second sees what the first remembered).
    monkeypatch.setattr(rejects, "_PENDING_MAX", 3)  # many hand-overs per example
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for background in (True, False):
            path = Path(tmp) / f"{background}.jsonl"
            store = open_path(Path(tmp) / f"{background}.sqlite", "tenant-token-1")
            again: Counter[str] = Counter()
            try:
                for run in (earlier, steps):
                    dead = DeadLetterFile(
                        path,
                        _Slow(store),
                        functools.partial(_count, again),
                        background=background,
                    )
                    for number, (event_id, reason, sync) in enumerate(run):
                        record = {"id": event_id, "n": number}
                        dead.write("s", reason, "why", record, None, 1, event_id, number)
                        if not sync:
                            dead.sync()
                        elif sync == 1:
                            dead.settle_soon()
                        elif sync == 2:
                            dead.sync(number - 2)
                    dead.close()
            finally:
                store.close()
            lines = [(x["record"]["id"], x["record"]["n"], x["reason"]) for x in _lines(path)]
            results.append((lines, again))
    assert results[0] == results[1]


def test_a_settle_that_failed_in_its_thread_raises_in_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rejects, "_PENDING_MAX", 2)
    store = open_path(tmp_path / "ledger.sqlite", "tenant-token-1")
    try:
        RejectedIds(store).remember([("a", "no_identifier")])

        def count(reason: str) -> None:
            raise RuntimeError("cannot count")

        dead = DeadLetterFile(tmp_path / "rejected.jsonl", RejectedIds(store), count)
        _write(dead, "a")
        _write(dead, "b")  # hands both over: the thread fails counting "a" again
        with pytest.raises(RuntimeError, match="cannot count"):
            dead.sync()
        dead.sync()  # raised once
        dead.close()
    finally:
        store.close()


class _Memory:
    """The store's part, in memory: what earlier settles remembered."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, str]] = set()

    def known(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return self.pairs & set(pairs)

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs.update(pairs)


_events = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from("abcdef")), st.sampled_from(["x", "y"])),
    max_size=25,
)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=_SHARED_PATCH)
@given(runs=st.lists(_events, min_size=1, max_size=3))
def test_settles_write_each_event_once_per_reason_across_runs(
    runs: list[list[tuple[str | None, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the plain rule, line by line: a line without an event id is always written; one
    with an id only the first time its (id, reason) is seen, in this run or an earlier one; the
    rest are counted. Settles of three lines, so some find nothing written before and no event
    twice (written at once) and others do not (line by line)."""
    monkeypatch.setattr(rejects, "_PENDING_MAX", 3)
    memory, seen = _Memory(), set()
    expected_lines, expected_again = [], Counter()
    for number, run in enumerate(runs):
        for index, (event_id, reason) in enumerate(run):
            if event_id is not None and (event_id, reason) in seen:
                expected_again[reason] += 1
                continue
            if event_id is not None:
                seen.add((event_id, reason))
            expected_lines.append((event_id, number, index, reason))
    again: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rejected.jsonl"
        for number, run in enumerate(runs):
            dead = DeadLetterFile(path, memory, functools.partial(_count, again), background=False)
            for index, (event_id, reason) in enumerate(run):
                record = {"id": event_id, "run": number, "n": index}
                dead.write("s", reason, "why", record, None, 1, event_id)
            dead.close()
        lines = [
            (x["record"]["id"], x["record"]["run"], x["record"]["n"], x["reason"])
            for x in _lines(path)
        ]
    assert lines == expected_lines
    assert again == expected_again
    assert memory.pairs == {(i, r) for i, _, _, r in expected_lines if i is not None}


@settings(max_examples=examples(500), deadline=None)
@given(
    times=st.lists(
        st.one_of(
            st.floats(min_value=0, max_value=4e9, allow_nan=False),
            # Just below and above a whole second: where rounding the microseconds carries.
            st.integers(0, 4_000_000_000).map(lambda s: s - 4e-7),
            st.integers(0, 4_000_000_000).map(lambda s: s + 4e-7),
            st.integers(0, 4_000_000_000).map(float),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_line_time_is_what_datetime_writes(times: list[float]) -> None:
    # The clock formats each second once: in any order of calls, each text is datetime's own.
    now = rejects._clock()
    for seconds in times:
        expected = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat()
        assert now(seconds) == expected.replace("+00:00", "Z")


def test_settle_soon_settles_in_its_thread_and_the_next_sync_has_nothing_left(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch handed over starts settling the lines held back so far; the STATE's sync that
    # follows waits for that settle and syncs nothing again (its settle made them durable).
    real_fsync, synced = rejects.os.fsync, []

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(rejects.os, "fsync", fsync)
    monkeypatch.setattr(rejects, "_PENDING_MAX", 1000)  # no hand-over of its own here
    path = tmp_path / "dead.jsonl"
    dead = DeadLetterFile(path, RejectedIds(store), lambda reason: None)
    for n in range(5):
        _write(dead, f"e{n}")
    assert _lines(path) == []  # held back: fewer than _PENDING_MAX
    dead.settle_soon()
    deadline = time.monotonic() + 120
    while len(_lines(path)) < 5:  # written by the settle thread, no sync asked for
        assert time.monotonic() < deadline, "settle_soon never settled the lines"
        time.sleep(0.01)
    dead.sync()
    assert synced == [synced[0]]  # the settle's own fsync only
    _write(dead, "e5")
    dead.sync()  # a new line: checked, written and synced here
    assert len(synced) == 2
    assert [line["record"]["id"] for line in _lines(path)] == [f"e{n}" for n in range(6)]
    dead.close()


def test_settle_soon_leaves_the_lines_to_a_settle_in_flight(tmp_path: Path, store: Store) -> None:
    # Only one settle at a time: lines written while one runs wait for the next, in order.
    path = tmp_path / "dead.jsonl"
    dead = DeadLetterFile(path, _Slow(store), lambda reason: None)
    for n in range(3):
        _write(dead, f"e{n}")
    dead.settle_soon()
    for n in range(3, 6):
        _write(dead, f"e{n}")
    dead.settle_soon()  # a settle may still be in flight: then these stay held back
    dead.sync()
    assert [line["record"]["id"] for line in _lines(path)] == [f"e{n}" for n in range(6)]
    dead.close()


def test_a_states_sync_settles_the_lines_up_to_its_position_and_keeps_the_rest(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A STATE read after record 3 needs the lines of records 1-3 durable, not those of later
    # records (a crash replays those), except in file order before a line of no record (a
    # refused metric row, for a batch already acknowledged), which it needs too.
    monkeypatch.setattr(rejects, "_PENDING_MAX", 1000)  # no hand-over of its own here
    path = tmp_path / "dead.jsonl"

    def written() -> list[str | None]:
        return [line["record"]["id"] for line in _lines(path)]

    dead = DeadLetterFile(path, RejectedIds(store), lambda reason: None)
    for n in range(1, 7):
        _write(dead, f"e{n}", position=n)
    dead.sync(3)
    assert written() == ["e1", "e2", "e3"]
    _write(dead, None, "metric_rejected")  # from the thread that sends, no position
    _write(dead, "e7", position=7)
    dead.sync(3)
    assert written() == ["e1", "e2", "e3", "e4", "e5", "e6", None]
    dead.sync(7)
    assert written() == ["e1", "e2", "e3", "e4", "e5", "e6", None, "e7"]
    _write(dead, "e8", position=8)
    dead.close()  # the end of the run settles the rest
    assert written()[-1] == "e8"
