"""Which rejected events are already in the dead-letter file: (event id, reason), per tenant.

A replay (Meltano resumes from the last STATE, or a tap re-exports a day) brings the same invalid
events again; appending them to the dead-letter file each time makes it grow with every replay
and hides what is new. The dead-letter file remembers nothing, so the store does: a replayed
event rejected for the same reason is counted (``rejected_again``) and not written again.

Ids are kept as hex hashes (fixed size, any text), with the reason and when they were first
written; they are pruned after ``ledger_ttl_days`` like the ledger, whose replay window they
share.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import time
from collections.abc import Iterable, Sequence

import orjson

from target_planhat.store import Store

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tp_rejected (tenant TEXT NOT NULL, id TEXT NOT NULL,"
    " reason TEXT NOT NULL, rejected_at BIGINT NOT NULL, PRIMARY KEY (tenant, id, reason))",
    "CREATE INDEX IF NOT EXISTS tp_rejected_at ON tp_rejected (tenant, rejected_at)",
)

Pair = tuple[str, str]  # (event id, reason)


_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")
_HASH = functools.partial(hashlib.blake2b, digest_size=16)
_HEX = operator.methodcaller("hexdigest")
_EVENT_ID = operator.itemgetter(0)


def _hash(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _hashes(pairs: Sequence[Pair]) -> list[str]:
    """:func:`_hash` of each pair's event id, through C-level ``map`` calls (no Python loop)."""
    return list(map(_HEX, map(_HASH, map(_ENCODE, map(_EVENT_ID, pairs)))))


class RejectedIds:
    """The (event id, reason) pairs this tenant's dead-letter lines were written for."""

    def __init__(self, store: Store, ttl_days: float = 7.0, one_statement: bool = True) -> None:
        self.store = store
        #: SQLite: each batch in one statement (JSON); False: the plain ``?`` lists, which
        #: PostgreSQL always uses (the tests compare the two).
        self.one_statement = one_statement
        store.ensure_schema("rejected", SCHEMA)
        self.pruned = self.prune(ttl_days)
        # The hashes of the pairs ``known`` was last asked about: ``remember`` follows with
        # those not found (the dead-letter file's settle), which need not be hashed again.
        self._hashed: dict[Pair, str] = {}

    def prune(self, ttl_days: float) -> int:
        cutoff = int(time.time() - ttl_days * 86400)
        store = self.store

        def work() -> int:
            rows = store.execute(
                "SELECT COUNT(*) FROM tp_rejected WHERE tenant = ? AND rejected_at < ?",
                (store.tenant, cutoff),
            )
            store.execute(
                "DELETE FROM tp_rejected WHERE tenant = ? AND rejected_at < ?",
                (store.tenant, cutoff),
            )
            return int(rows[0][0])

        return store.atomic(work)

    def known(self, pairs: Sequence[Pair]) -> set[Pair]:
        """Those of ``pairs`` already written to the dead-letter file."""
        store = self.store
        hashed = self._hashed = dict(zip(pairs, _hashes(pairs), strict=True))
        by_hash: dict[str, list[Pair]] = {}
        for pair, hashed_id in hashed.items():
            by_hash.setdefault(hashed_id, []).append(pair)
        hashes = list(by_hash)
        found: set[Pair] = set()
        if store.kind == "sqlite" and self.one_statement:
            # The batch as one JSON parameter: one statement, so sqlite3 lets go of the GIL
            # once for it, not once per id as for a list of ``?`` (the dead-letter file settles
            # in a thread beside the one reading input, see rejects.py).
            rows = store.execute(
                "SELECT t.id, t.reason FROM json_each(?) AS q"
                " CROSS JOIN tp_rejected AS t ON t.tenant = ? AND t.id = q.value",
                (orjson.dumps(hashes).decode(), store.tenant),
            )
            for hashed, reason in rows:
                found.update(pair for pair in by_hash.get(hashed, ()) if pair[1] == reason)
            return found
        step = max(1, store.max_params - 1)
        for start in range(0, len(hashes), step):
            chunk = hashes[start : start + step]
            marks = ", ".join("?" * len(chunk))
            rows = store.execute(
                f"SELECT id, reason FROM tp_rejected WHERE tenant = ? AND id IN ({marks})",
                (store.tenant, *chunk),
            )
            for hashed, reason in rows:
                found.update(pair for pair in by_hash.get(hashed, ()) if pair[1] == reason)
        return found

    def remember(self, pairs: Iterable[Pair]) -> None:
        """Record pairs whose dead-letter lines are durable (synced) now."""
        store = self.store
        now = int(time.time())
        if store.kind == "sqlite" and self.one_statement:
            # One statement per reason (a run has few), each id list as one JSON parameter:
            # see known().
            hashed = self._hashed
            by_reason: dict[str, list[str]] = {}
            for pair in pairs:
                hashed_id = hashed.get(pair)
                by_reason.setdefault(pair[1], []).append(
                    hashed_id if hashed_id is not None else _hash(pair[0])
                )
            if not by_reason:
                return

            def insert() -> None:
                for reason, hashes in by_reason.items():
                    store.execute(
                        "INSERT INTO tp_rejected (tenant, id, reason, rejected_at)"
                        " SELECT ?, value, ?, ? FROM json_each(?) WHERE true"
                        " ON CONFLICT (tenant, id, reason) DO NOTHING",
                        (store.tenant, reason, now, orjson.dumps(hashes).decode()),
                    )

            store.atomic(insert)
            return
        hashed = self._hashed
        rows = [
            (store.tenant, hashed.get((event_id, reason)) or _hash(event_id), reason, now)
            for event_id, reason in pairs
        ]
        if not rows:
            return
        store.atomic(
            lambda: store.executemany(
                "INSERT INTO tp_rejected (tenant, id, reason, rejected_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, id, reason) DO NOTHING",
                rows,
            )
        )
