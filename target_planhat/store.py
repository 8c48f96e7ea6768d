"""Where the ledger (and what else a run must remember across runs) lives: SQLite or PostgreSQL.

A container or an ephemeral worker loses its local disk after every run, and with it a ledger in
an SQLite file. ``ledger_url`` puts the same tables in PostgreSQL instead, beside Meltano's own
state. Both backends speak the same small dialect (``?`` placeholders, ``ON CONFLICT``, TEXT and
BIGINT) through one interface, so every table is written once.

Several target processes may share one store (pipelines of different projects, of different
Planhat tenants): SQLite in WAL mode with ``BEGIN IMMEDIATE`` transactions and a busy timeout (no
"database is locked" under normal load, no deadlock between a read and its upgrade to a write),
PostgreSQL with its row locks and advisory locks for DDL. Every row is scoped by ``tenant``, a
keyed fingerprint of the tenant token (HMAC-SHA256 under a random key kept in the store), from
which the token cannot be recovered.

psycopg is imported only when ``ledger_url`` is set, so SQLite users pay nothing for it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; SQLite runs are not serialised
    fcntl = None  # type: ignore[assignment]

from target_planhat import redact
from target_planhat.errors import StoreError
from target_planhat.settings import ConfigError, Settings

logger = logging.getLogger("target_planhat.store")

T = TypeVar("T")

#: The PostgreSQL schema every table lives in (created on first use when the role may).
PG_SCHEMA = "target_planhat"
#: How long one SQLite statement waits for another process's write lock before it fails.
SQLITE_BUSY_SECONDS = 60.0
_META = (
    "CREATE TABLE IF NOT EXISTS tp_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tp_schema"
    " (name TEXT NOT NULL PRIMARY KEY, version BIGINT NOT NULL)",
)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{redact.MASK}@{host}"))


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def fingerprint(token: str, key: bytes) -> str:
    """The tenant as stored: HMAC-SHA256 of the token under the store's own random key.

    The token itself is never stored, and a tenant token is a long random secret, so it cannot
    be recovered from its HMAC; the key is random per store, so the same token gives unrelated
    fingerprints in two stores and no table computed in advance applies. 128 bits in hex:
    unique enough to tell tenants apart.
    """
    return hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


class Store:
    """One connection to the store; the methods are safe to call from several threads."""

    kind: str = ""
    tenant: str = ""
    location: str = ""
    #: The store had no tables of ours before this process opened it.
    created: bool = False
    #: Most ``?`` parameters one statement may take (SQLite's limit; PostgreSQL takes arrays).
    max_params: int = 999

    def __init__(self, max_retry_seconds: float = 900.0) -> None:
        self.max_retry_seconds = max_retry_seconds
        #: Waits between retries; the run replaces it with its shutdown guard's ``sleep``.
        self.sleep: Callable[[float], None] = time.sleep
        self._lock = threading.RLock()
        self._depth = 0

    # --- the interface ----------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Atomic; committed when the block exits without error. Nested blocks join the outer.

        A block is not retried when the connection is lost in it (it cannot be re-run from
        here): that raises ``StoreError``. Use ``atomic`` for work that may be retried.
        """
        raise NotImplementedError
        yield  # pragma: no cover

    def atomic(self, work: Callable[[], T]) -> T:
        """``work()`` in a transaction, retried on a lost connection or a lock conflict.

        Retried with backoff until ``max_retry_seconds`` have passed, then ``StoreError``.
        ``work`` must be safe to run again (it is rolled back before each retry).
        """
        deadline = time.monotonic() + self.max_retry_seconds
        delay = 0.2
        while True:
            try:
                with self.transaction():
                    return work()
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise self._gave_up(exc) from None
                logger.warning("%s: %s; retrying in %.1fs", self.location, self._reason(exc), delay)
                self.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._recover()

    def lock(self, name: str) -> None:
        """Inside a transaction: serialise with other processes doing the same (DDL, counters)."""

    @contextlib.contextmanager
    def exclusive(self, name: str, sleep: Callable[[float], None] | None = None) -> Iterator[None]:
        """Held across transactions until the block exits: one process at a time per ``name``
        and tenant (SQLite: per name and file). Released by the server (a session advisory lock)
        or the OS (``flock``) when a process dies, kill -9 included. Waits with ``sleep``
        (default: this store's), saying so once after a second."""
        sleep = sleep or self.sleep
        waited, delay, told = 0.0, 0.02, False
        while not self._try_exclusive(name):
            if not told and waited >= 1.0:
                logger.info(
                    "Waiting for another run of this tenant to release its %s lock (%s)",
                    name,
                    self.location,
                )
                told = True
            sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            self._release_exclusive(name)

    def _try_exclusive(self, name: str) -> bool:
        return True

    def _release_exclusive(self, name: str) -> None:
        return None

    def tables(self, prefix: str) -> list[str]:
        """Names of our tables starting with ``prefix`` (partitions)."""
        raise NotImplementedError

    def ensure_schema(self, name: str, statements: Sequence[str]) -> None:
        """Apply ``statements[version:]`` once, where ``version`` is how many ran before.

        ``statements`` only ever grows: a later release appends what changes its tables, and
        each store applies what it has not, exactly once, even with processes starting together.
        """

        def apply() -> None:
            self.lock(f"schema:{name}")
            rows = self.execute("SELECT version FROM tp_schema WHERE name = ?", (name,))
            version = int(rows[0][0]) if rows else 0
            for statement in statements[version:]:
                self.execute(statement)
            if len(statements) > version:
                self.execute(
                    "INSERT INTO tp_schema (name, version) VALUES (?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET version = excluded.version",
                    (name, len(statements)),
                )

        rows = self.execute("SELECT version FROM tp_schema WHERE name = ?", (name,))
        if rows and int(rows[0][0]) >= len(statements):
            return
        self.atomic(apply)

    def close(self) -> None:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------

    def _setup(self, tenant_token: str) -> None:
        """Our own tables, and the tenant fingerprint under this store's key."""
        tables_before = self.tables("tp_")

        def meta() -> None:
            self.lock("schema:meta")
            for statement in _META:
                self.execute(statement)
            self.execute(
                "INSERT INTO tp_meta (key, value) VALUES ('tenant_key', ?)"
                " ON CONFLICT (key) DO NOTHING",
                (secrets.token_hex(32),),
            )

        if "tp_meta" not in tables_before:
            self.atomic(meta)
        self.created = not tables_before
        key = self.execute("SELECT value FROM tp_meta WHERE key = 'tenant_key'")[0][0]
        self.tenant = fingerprint(tenant_token, bytes.fromhex(key))

    def _retryable(self, exc: BaseException) -> bool:
        return False

    def _recover(self) -> None:
        """Before a retry: reconnect if the connection is gone."""

    def _reason(self, exc: BaseException) -> str:
        return redact.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))

    def _gave_up(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"ledger at {self.location} failed for {self.max_retry_seconds:g}s "
            f"(max_retry_seconds): {self._reason(exc)}"
        )


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, path: Path, tenant_token: str, max_retry_seconds: float = 900.0) -> None:
        super().__init__(max_retry_seconds)
        self.path = path
        self.location = str(path)
        self._exclusive_fds: dict[str, int] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path),
                isolation_level=None,
                check_same_thread=False,
                timeout=SQLITE_BUSY_SECONDS,
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"ledger_path: cannot open {str(path)!r}: {exc}") from None
        try:
            # WAL: readers never block the writer, a committed transaction survives kill -9.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Lookups probe a few large tables at random places: read them through the OS page
            # cache (memory-mapped) instead of copying every page into SQLite's small cache.
            self._db.execute("PRAGMA mmap_size=1073741824")
            if sys.version_info >= (3, 11):  # Connection.getlimit
                limit = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                self.max_params = max(999, min(limit, 32_766))
            self._setup(tenant_token)
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(f"ledger_path: cannot use {str(path)!r}: {exc}") from None

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self._lock:
            self._db.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            # IMMEDIATE takes the write lock now (waiting up to the busy timeout): a deferred
            # transaction that reads first fails at once with SQLITE_BUSY when it upgrades.
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

    def tables(self, prefix: str) -> list[str]:
        escaped = prefix.replace("_", "\\_")
        rows = self.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'",
            (escaped + "%",),
        )
        return sorted(row[0] for row in rows)

    def _try_exclusive(self, name: str) -> bool:
        if fcntl is None:
            return True
        fd = os.open(f"{self.path}.{name}-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._exclusive_fds[name] = fd
        return True

    def _release_exclusive(self, name: str) -> None:
        fd = self._exclusive_fds.pop(name, None)
        if fd is not None:
            os.close(fd)  # releases the flock

    def _retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        )

    def close(self) -> None:
        self._db.close()


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStore(Store):
    kind = "postgres"

    def __init__(self, url: str, tenant_token: str, max_retry_seconds: float = 900.0) -> None:
        super().__init__(max_retry_seconds)
        self.url = url
        self.location = mask_url(url)
        redact.register(url_password(url))
        import psycopg  # lazy: only ledger_url pays for the driver

        self._psycopg = psycopg
        try:
            self._conn = self._connect()
            self._setup(tenant_token)
        except psycopg.Error as exc:
            raise ConfigError(
                f"ledger_url: cannot use the ledger at {self.location}: {self._reason(exc)}"
            ) from None

    def _connect(self) -> Any:
        psycopg = self._psycopg
        conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=10, application_name="target-planhat"
        )
        try:
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (PG_SCHEMA,)
            ).fetchone()
            if not exists:
                # Needs CREATE on the database; a DBA may create the schema instead (README).
                with contextlib.suppress(psycopg.errors.UniqueViolation):
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            conn.execute(f"SET search_path TO {PG_SCHEMA}")
        except BaseException:
            conn.close()
            raise
        return conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        if self._depth:
            with self._lock:
                return self._run(sql, params)
        return self._retrying(lambda: self._run(sql, params))

    def _run(self, sql: str, params: Sequence[object]) -> list[tuple]:
        cursor = self._conn.execute(_pg_sql(sql), params or None)
        return cursor.fetchall() if cursor.description is not None else []

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        rows = list(rows)

        def run() -> None:
            with self._conn.cursor() as cursor:
                cursor.executemany(_pg_sql(sql), rows)

        if self._depth:
            with self._lock:
                run()
        else:
            self._retrying(run)

    def _retrying(self, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.max_retry_seconds
        delay = 0.2
        while True:
            try:
                with self._lock:
                    return work()
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise self._gave_up(exc) from None
                logger.warning("%s: %s; retrying in %.1fs", self.location, self._reason(exc), delay)
                self.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._recover()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._conn.transaction():
                    yield
            finally:
                self._depth = 0

    def lock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"target_planhat:{name}",))

    def _try_exclusive(self, name: str) -> bool:
        key = f"target_planhat:{name}:{self.tenant}"
        return bool(self.execute("SELECT pg_try_advisory_lock(hashtext(?))", (key,))[0][0])

    def _release_exclusive(self, name: str) -> None:
        key = f"target_planhat:{name}:{self.tenant}"
        with contextlib.suppress(Exception):  # a lost connection released it already
            self.execute("SELECT pg_advisory_unlock(hashtext(?))", (key,))

    def tables(self, prefix: str) -> list[str]:
        escaped = prefix.replace("_", "\\_")
        rows = self.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = ? AND tablename LIKE ?",
            (PG_SCHEMA, escaped + "%"),
        )
        return sorted(row[0] for row in rows)

    def _retryable(self, exc: BaseException) -> bool:
        errors = self._psycopg.errors
        if isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected)):
            return True
        if isinstance(exc, (self._psycopg.OperationalError, self._psycopg.InterfaceError)):
            return True  # connection lost, server shutting down or restarting
        return bool(getattr(self, "_conn", None) is not None and self._conn.closed)

    def _recover(self) -> None:
        if self._conn.closed or self._conn.broken:
            with contextlib.suppress(Exception):
                self._conn.close()
            try:
                self._conn = self._connect()
                logger.warning("%s: reconnected", self.location)
            except self._psycopg.Error as exc:
                # Still down: the next attempt fails on the closed connection and waits again.
                logger.debug("reconnect failed: %s", self._reason(exc))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def open_store(settings: Settings) -> Store:
    """The store the settings name; raises ``ConfigError`` naming ledger_path or ledger_url."""
    url = getattr(settings, "ledger_url", None)
    if url:
        return PostgresStore(url, settings.tenant_token, settings.max_retry_seconds)
    path = Path(settings.ledger_path)
    return SQLiteStore(path, settings.tenant_token, settings.max_retry_seconds)


def open_path(path: str | os.PathLike[str], tenant_token: str = "") -> SQLiteStore:
    """An SQLite store at ``path`` without full settings (tests, the migration command)."""
    return SQLiteStore(Path(path), tenant_token)
