"""A real PostgreSQL server for the test session: never a mock, never SQLite standing in.

The server binaries are found in ``TARGET_PLANHAT_PG_BIN``, Debian's ``/usr/lib/postgresql/*/bin``,
``pg_config --bindir`` or the PATH. ``initdb`` refuses to run as root, so as root the cluster
belongs to an unprivileged user (``nobody``) and every server command runs as that user. Trust
authentication on 127.0.0.1 only, a free port, fsync off (the tests are about our code, not about
the disk). The cluster lives in memory (``/dev/shm``) where there is one, and each test's database
is dropped after it: creating and removing a database is then no disk I/O (on a busy disk the
session's teardown alone took 10 to 25 seconds).

The tests connect as ``ledger``, a role without superuser, CREATEDB or CREATEROLE, that owns
nothing until it creates it: what works for it needs no superuser.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install the PostgreSQL server "
    "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15) or set "
    "TARGET_PLANHAT_PG_BIN to the folder holding initdb"
)
ROLE = "ledger"
PASSWORD = "ledger-secret-pw"  # trust auth ignores it; it is there to prove it is masked


def find_bindir() -> Path | None:
    candidates: list[str] = []
    if os.environ.get("TARGET_PLANHAT_PG_BIN"):
        candidates.append(os.environ["TARGET_PLANHAT_PG_BIN"])
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(out.stdout.strip())
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for candidate in candidates:
        folder = Path(candidate)
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_scratch() -> str | None:
    """Memory-backed scratch space when the machine has it, else the usual temp folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="tp-pg-", dir=memory_scratch()))
    )
    port: int = field(default_factory=_free_port)
    _databases: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *args]

    def _run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        result = subprocess.run(self._as_owner(args), capture_output=True, text=True, **kwargs)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise subprocess.CalledProcessError(
                result.returncode,
                args,
                result.stdout,
                f"{result.stderr}\n--- server.log ---\n{tail}",
            )
        return result

    def init(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            cwd=self.root,
        )
        self.start()
        self.psql(
            f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' "
            "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "120",
                "start",
            ],
            cwd=self.root,
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            cwd=self.root,
        )

    def running(self) -> bool:
        status = subprocess.run(
            self._as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
        )
        return status.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            cwd=self.root,
        )
        return result.stdout

    def new_database(self) -> str:
        """A fresh database the test role may create its schema in (CONNECT, CREATE only)."""
        name = f"ledger_{os.getpid()}_{next(self._databases)}"
        self.psql(f"CREATE DATABASE {name}")
        self.psql(f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {name} TO {ROLE}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test's database (connections it left open are ended)."""
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer | None:
    """A running server, or None when no binaries are found."""
    bindir = find_bindir()
    if bindir is None:
        return None
    server = PostgresServer(bindir)
    try:
        server.init()
    except subprocess.CalledProcessError as exc:
        log = server.root / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.close()
        raise RuntimeError(
            f"starting PostgreSQL from {bindir} failed: {exc.stderr or exc}\n{detail}"
        ) from None
    return server


@dataclass
class StoreBackend:
    """What a test needs to point the target (or ``open_store``) at one backend."""

    kind: str  # "sqlite" | "postgres"
    config: dict[str, str]  # {"ledger_path": ...} or {"ledger_url": ...}
    server: PostgresServer | None = None
    database: str | None = None
    #: Stores ``open`` made, closed by the fixture after the test (a test may leave them open).
    opened: list[Any] = field(default_factory=list)

    def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (from ``base_config``) with its ledger in this backend."""
        config = {**config, **self.config}
        if self.kind == "postgres":
            config.pop("ledger_path", None)
        return config

    def settings(self, tmp_path: Path, tenant_token: str = "tenant-token-1", **overrides: Any):
        from target_planhat.settings import compile_settings
        from tests.support.cli import base_config

        config = base_config(tmp_path, tenant_token=tenant_token, **overrides)
        return compile_settings(self.configure(config))

    def open(self, tmp_path: Path, tenant_token: str = "tenant-token-1", **overrides: Any):
        from target_planhat.store import open_store

        store = open_store(self.settings(tmp_path, tenant_token, **overrides))
        self.opened.append(store)
        return store

    def close_opened(self) -> None:
        while self.opened:
            self.opened.pop().close()
