"""DeadLetterFile: lines written before (by event id and reason) are counted, not written again."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from target_planhat.rejected_ids import RejectedIds
from target_planhat.rejects import DeadLetterFile
from target_planhat.store import open_path


class _Broken:
    """A store that cannot answer: every line must still be written."""

    def known(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        raise OSError("disk gone")

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        raise AssertionError("never asked to remember what it could not check")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _write(dead: DeadLetterFile, event_id: str | None, reason: str = "no_identifier") -> None:
    dead.write("events", reason, "why", {"id": event_id}, {"action": "a"}, 1, event_id)


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
