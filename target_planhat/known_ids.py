"""The ids Planhat knows, cached in the store, and the rule that says whether an activity matches.

Planhat's analytics endpoint answers 200 to an activity that matches no company or end user and
then drops it (its own support article). Before sending, the target asks: would Planhat keep
this? The ids come from Planhat's REST API (``planhat_rest``) and are cached in the ledger's
store, per tenant, so a pipeline that runs every few minutes does not list 100k end users each
time: a model's list is reloaded once it is older than ``planhat_ids_ttl_minutes``, and once more
(at most once a run) before anything is held when it is older than a minute, so a company created
a moment ago is not held for an hour.

The rule (README, "Unmatched activities"):

- an activity that names an asset (``assetExternalId``) matches when that asset is known, one
  that names a project (``projectExternalId``) when that project is known (both, when it names
  both);
- any other activity matches when its ``companyExternalId`` is a known company, or its
  ``externalId`` or ``email`` is a known end user (emails compared case-insensitively);
- Planhat's own fallback for users without a company (the email's domain against a company's
  ``domains``) is not reproduced: such an activity is unmatched unless its user is known.

Unmatched reasons: ``unknown_asset``, ``unknown_project``, ``unknown_company`` (it names a
company, and neither that company nor its user is known), ``unknown_user`` (it names no company
and its user is unknown).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from target_planhat.errors import ConfigError, PlanhatRestAuthError, PlanhatRestError
from target_planhat.planhat_rest import (
    ASSETS,
    COMPANIES,
    ENDUSERS,
    PROJECTS,
    Model,
    PlanhatRestClient,
)

logger = logging.getLogger("target_planhat.known_ids")

#: Kinds of id, and where each comes from: (model, field of its list).
KINDS: dict[str, tuple[Model, str]] = {
    "company": (COMPANIES, "externalId"),
    "user": (ENDUSERS, "externalId"),
    "email": (ENDUSERS, "email"),
    "asset": (ASSETS, "externalId"),
    "project": (PROJECTS, "externalId"),
}
#: The activity field each kind is matched on.
ACTIVITY_FIELDS = {
    "company": "companyExternalId",
    "user": "externalId",
    "email": "email",
    "asset": "assetExternalId",
    "project": "projectExternalId",
}
#: Before holding, a cache older than this is refreshed once (at most once a run).
FRESH_BEFORE_HOLDING_SECONDS = 60.0
_CHUNK = 500  # ids per lookup statement: under SQLite's bound-parameter limit

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS planhat_ids (tenant TEXT NOT NULL, kind TEXT NOT NULL,"
    " value TEXT NOT NULL, PRIMARY KEY (tenant, kind, value))",
    "CREATE TABLE IF NOT EXISTS planhat_ids_loaded (tenant TEXT NOT NULL, model TEXT NOT NULL,"
    " loaded_at BIGINT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (tenant, model))",
)


class StoreLike(Protocol):
    """The part of ``store.Store`` used here (type-only: stores sit beside this module)."""

    tenant: str

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    def atomic(self, work: Callable[[], Any]) -> Any: ...

    def ensure_schema(self, name: str, statements: Sequence[str]) -> None: ...


def models_for(mapped_fields: Iterable[str]) -> tuple[Model, ...]:
    """The lists to load: companies and end users always, assets / projects when mapped."""
    fields = set(mapped_fields)
    models: list[Model] = [COMPANIES, ENDUSERS]
    if "assetExternalId" in fields:
        models.append(ASSETS)
    if "projectExternalId" in fields:
        models.append(PROJECTS)
    return tuple(models)


def _kinds_of(model: Model) -> list[tuple[str, str]]:
    return [(kind, field) for kind, (m, field) in KINDS.items() if m is model]


def normalise(kind: str, value: Any) -> str | None:
    """The form an id is stored and compared in: a string; emails lower-cased and trimmed."""
    if value is None or value == "" or isinstance(value, (dict, list, bool)):
        return None
    text = str(value)
    if kind == "email":
        text = text.strip().lower()
    return text or None


@dataclass
class Unmatched:
    """Why an activity would be dropped, and the id Planhat does not know."""

    reason: str
    unknown_id: str


class KnownIds:
    """Known ids of one tenant: in the store (``store``), or in memory (dry run: stores
    nothing)."""

    def __init__(
        self,
        client: PlanhatRestClient,
        models: Sequence[Model],
        page_sizes: Mapping[str, int],
        ttl_minutes: float,
        store: StoreLike | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.models = tuple(models)
        self.page_sizes = dict(page_sizes)
        self.ttl_seconds = ttl_minutes * 60.0
        self.store = store
        self._clock = clock
        self._memory: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self._memory_loaded: dict[str, float] = {}
        self._refreshed_before_holding = False
        self.loads = 0  # lists loaded from Planhat by this process
        if store is not None:
            store.ensure_schema("planhat_ids", SCHEMA)

    # --- freshness ---------------------------------------------------------------------------

    def loaded_at(self) -> dict[str, float]:
        """``{model name: Unix time of its last load}`` (models never loaded are absent)."""
        if self.store is None:
            return dict(self._memory_loaded)
        rows = self.store.execute(
            "SELECT model, loaded_at FROM planhat_ids_loaded WHERE tenant = ?",
            (self.store.tenant,),
        )
        return {str(model): int(at) / 1000.0 for model, at in rows}

    def age(self) -> float | None:
        """Seconds since the oldest of the needed lists was loaded; None if one never was."""
        loaded = self.loaded_at()
        if any(m.name not in loaded for m in self.models):
            return None
        return max(0.0, self._clock() - min(loaded[m.name] for m in self.models))

    def refresh_if_older(self, seconds: float) -> bool:
        """Reload every needed list older than ``seconds``; True if any was reloaded."""
        loaded = self.loaded_at()
        now = self._clock()
        stale = [m for m in self.models if now - loaded.get(m.name, -1e18) >= seconds]
        for model in stale:
            self._load(model)
        return bool(stale)

    def refresh_if_due(self) -> bool:
        """At start-up: reload what is older than ``planhat_ids_ttl_minutes``.

        401 / 403 is a configuration error naming ``planhat_api_token``. Another failure (after
        the client's retries) falls back to ids loaded earlier, with a WARNING; without any, the
        run stops: every activity would look unmatched.
        """
        return self._refresh(self.ttl_seconds)

    def refresh_before_holding(self) -> bool:
        """Before the first activity of a run is held: reload what is older than a minute, so a
        company created since the last load is not held. Once a run."""
        if self._refreshed_before_holding:
            return False
        self._refreshed_before_holding = True
        return self._refresh(FRESH_BEFORE_HOLDING_SECONDS)

    def _refresh(self, seconds: float) -> bool:
        try:
            return self.refresh_if_older(seconds)
        except PlanhatRestAuthError as exc:
            raise ConfigError(str(exc)) from None
        except PlanhatRestError as exc:
            age = self.age()
            if age is None:
                raise
            logger.warning(
                "Could not reload the ids Planhat knows (%s); using those loaded %.0f minutes ago",
                exc,
                age / 60,
            )
            return False

    def _load(self, model: Model) -> None:
        started = time.monotonic()
        values = self.client.values(model, self.page_sizes[model.name], _page_setting(model))
        self.loads += 1
        now_ms = int(self._clock() * 1000)
        fresh = {
            kind: {v for v in (normalise(kind, x) for x in values.get(field, ())) if v}
            for kind, field in _kinds_of(model)
        }
        count = sum(len(v) for v in fresh.values())
        if self.store is None:
            for kind, ids in fresh.items():
                self._memory[kind] = ids
            self._memory_loaded[model.name] = now_ms / 1000.0
        else:
            self._replace(model, fresh, now_ms, count)
        logger.info(
            "Loaded %d %s ids from Planhat in %.1fs",
            count,
            model.name,
            time.monotonic() - started,
        )

    def _replace(self, model: Model, fresh: dict[str, set[str]], now_ms: int, count: int) -> None:
        """Make the store's ids of ``model`` exactly ``fresh``: only the difference is written,
        so an unchanged list of 100k end users costs one read, not 100k inserts."""
        store = self.store
        assert store is not None
        tenant = store.tenant

        def work() -> None:
            for kind, ids in fresh.items():
                rows = store.execute(
                    "SELECT value FROM planhat_ids WHERE tenant = ? AND kind = ?", (tenant, kind)
                )
                stored = {row[0] for row in rows}
                gone = stored - ids
                new = ids - stored
                if gone:
                    store.executemany(
                        "DELETE FROM planhat_ids WHERE tenant = ? AND kind = ? AND value = ?",
                        [(tenant, kind, v) for v in gone],
                    )
                if new:
                    store.executemany(
                        "INSERT INTO planhat_ids (tenant, kind, value) VALUES (?, ?, ?)"
                        " ON CONFLICT (tenant, kind, value) DO NOTHING",
                        [(tenant, kind, v) for v in new],
                    )
            store.execute(
                "INSERT INTO planhat_ids_loaded (tenant, model, loaded_at, count)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, model)"
                " DO UPDATE SET loaded_at = excluded.loaded_at, count = excluded.count",
                (tenant, model.name, now_ms, count),
            )

        store.atomic(work)

    # --- lookups -----------------------------------------------------------------------------

    def known(self, kind: str, values: Iterable[str]) -> set[str]:
        """The subset of ``values`` (normalised) that Planhat knows as ``kind``."""
        wanted = list(dict.fromkeys(values))
        if not wanted:
            return set()
        if self.store is None:
            ids = self._memory[kind]
            return {v for v in wanted if v in ids}
        tenant = self.store.tenant
        found: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.store.execute(
                "SELECT value FROM planhat_ids WHERE tenant = ? AND kind = ?"
                f" AND value IN ({marks})",
                (tenant, kind, *chunk),
            )
            found.update(row[0] for row in rows)
        return found

    def check(self, activities: Sequence[Mapping[str, Any]]) -> list[Unmatched | None]:
        """For each activity: None if it matches, else why not (one lookup per kind per call)."""
        wanted: dict[str, set[str]] = {kind: set() for kind in KINDS}
        keys: list[dict[str, str]] = []
        for activity in activities:
            own: dict[str, str] = {}
            for kind, field in ACTIVITY_FIELDS.items():
                value = normalise(kind, activity.get(field))
                if value is not None:
                    own[kind] = value
                    wanted[kind].add(value)
            keys.append(own)
        needed = {kind for kind in KINDS if wanted[kind]}
        known = {kind: self.known(kind, sorted(wanted[kind])) for kind in needed}
        return [match(own, known) for own in keys]


def match(own: Mapping[str, str], known: Mapping[str, set[str]]) -> Unmatched | None:
    """The rule, for one activity's normalised ids (``own``) and the known ones among them."""
    level = False
    for kind in ("asset", "project"):
        value = own.get(kind)
        if value is not None:
            level = True
            if value not in known.get(kind, ()):
                return Unmatched(f"unknown_{kind}", value)
    if level:
        return None
    company = own.get("company")
    if company is not None and company in known.get("company", ()):
        return None
    for kind in ("user", "email"):
        value = own.get(kind)
        if value is not None and value in known.get(kind, ()):
            return None
    if company is not None:
        return Unmatched("unknown_company", company)
    return Unmatched("unknown_user", own.get("user") or own.get("email") or "")


def _page_setting(model: Model) -> str:
    return f"planhat_{model.name}_page_size"
