"""Session-wide fixtures: a real PostgreSQL server, and ``store_backend`` for both backends;
the hypothesis profile: full example counts unless the run leaves out the slow tests. The quick
run also keeps its temporary files in memory (``/dev/shm``, removed at the end): on a busy disk
the ledger tests' SQLite commits waited tens of seconds for fsync, which no test is about.

The server starts once, on first use, and each test gets a database of its own. Without server
binaries the PostgreSQL cases skip, naming what to install; with ``CI=true`` they fail instead,
so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

from tests.support import examples
from tests.support.postgres import (
    INSTALL_HINT,
    PostgresServer,
    StoreBackend,
    memory_scratch,
    start_server,
)

_MEMORY_BASETEMP = pytest.StashKey[str]()


def _leaves_out_slow(markexpr: str) -> bool:
    """Whether ``-m markexpr`` deselects a test marked only ``slow`` (the quick run)."""
    if not markexpr:
        return False
    try:
        return not Expression.compile(markexpr).evaluate(lambda name, **_: name == "slow")
    except Exception:  # pytest reports a bad expression itself
        return False


#: Workers for the quick run when pytest-xdist is installed and ``-n`` is not given (``-n 0``:
#: one process). Two: the machines this runs on have two cores.
QUICK_WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Before xdist's own hook (also tryfirst; a conftest's runs first), which turns -n into workers.
    if (
        config.pluginmanager.hasplugin("xdist")
        and config.getoption("numprocesses", None) is None
        and not hasattr(config, "workerinput")
        and not config.getoption("collectonly", False)
        and _leaves_out_slow(config.getoption("markexpr", "") or "")
    ):
        config.option.numprocesses = QUICK_WORKERS


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module is imported, so ``examples(N)`` in their decorators sees it.
    chosen = config.getoption("hypothesis_profile", None)
    if chosen in ("full", "quick"):
        examples.use(chosen)
    quick = _leaves_out_slow(config.getoption("markexpr", "") or "")
    if not chosen and quick:
        examples.use("quick")
    scratch = memory_scratch()
    if quick and scratch and not config.option.basetemp and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="target-planhat-tests-", dir=scratch)
        config.stash[_MEMORY_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_MEMORY_BASETEMP, None)
    if base:
        shutil.rmtree(base, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    from hypothesis import settings

    return f"hypothesis: {settings.get_current_profile_name()} profile (tests/support/examples.py)"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    if server is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database, for a role without superuser."""
    database = postgres_server.new_database()
    yield postgres_server.url(database)
    postgres_server.drop_database(database)


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    if request.param == "sqlite":
        backend = StoreBackend("sqlite", {"ledger_path": str(tmp_path / "ledger.sqlite")})
        yield backend
        backend.close_opened()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    database = server.new_database()
    backend = StoreBackend("postgres", {"ledger_url": server.url(database)}, server, database)
    yield backend
    backend.close_opened()
    server.drop_database(database)
