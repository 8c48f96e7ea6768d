"""The delivery ledger: ids of activities Planhat has acknowledged, in SQLite.

Planhat has no idempotency key, so a replay after a crash (Meltano resumes from the last STATE)
would record every activity of the unacknowledged tail twice. The ledger remembers what was
acknowledged, so a replay sends only what Planhat never confirmed. SQLite in WAL mode: a committed
transaction survives ``kill -9`` of this process, and there is no server to run.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from target_planhat.settings import DEFAULT_LEDGER_PATH

__all__ = ["DEFAULT_LEDGER_PATH", "Ledger"]

_CHUNK = 500  # stays under SQLite's bound-parameter limit


class Ledger:
    def __init__(self, path: str | Path, ttl_days: float = 7.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS acked (id TEXT PRIMARY KEY, acked_at REAL NOT NULL)"
            " WITHOUT ROWID"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS acked_at ON acked (acked_at)")
        try:
            self._db.execute("SELECT value FROM json_each('[]')")
            self._json = True
        except sqlite3.Error:  # an SQLite built without JSON: one statement per id
            self._json = False
        self.pruned = self.prune(ttl_days)

    def _as_json(self, ids: Sequence[str]) -> str | None:
        """``ids`` as one JSON array parameter, or ``None`` where that may not round-trip.

        One statement for a whole batch, not one per id: the sender thread then gives up the
        GIL once per batch instead of once per id (each time it waits for the main thread).
        """
        if not self._json:
            return None
        try:
            text = orjson.dumps(ids).decode()
        except (orjson.JSONEncodeError, TypeError):  # e.g. lone surrogates
            return None
        return None if "\\u0000" in text else text

    def prune(self, ttl_days: float) -> int:
        """Forget ids older than ``ttl_days`` (Amplitude's own dedupe window is 7 days)."""
        cursor = self._db.execute(
            "DELETE FROM acked WHERE acked_at < ?", (time.time() - ttl_days * 86400,)
        )
        return cursor.rowcount

    def known(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` already acknowledged."""
        array = self._as_json(ids)
        if array is not None:
            query = "SELECT id FROM acked WHERE id IN (SELECT value FROM json_each(?))"
            return {row[0] for row in self._db.execute(query, (array,))}
        found: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT id FROM acked WHERE id IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    def record(self, ids: Iterable[str]) -> None:
        """Record acknowledged ids in one transaction (committed when this returns)."""
        now = time.time()
        ids = ids if isinstance(ids, list) else list(ids)
        array = self._as_json(ids)
        if array is not None:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT OR REPLACE INTO acked (id, acked_at) SELECT value, ? FROM json_each(?)",
                    (now, array),
                )
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO acked (id, acked_at) VALUES (?, ?)",
                ((i, now) for i in ids),
            )

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM acked").fetchone()[0])

    def close(self) -> None:
        self._db.close()
