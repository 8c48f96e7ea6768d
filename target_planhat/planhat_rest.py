"""Planhat's main REST API, read-only: the ids of the companies, end users, assets and projects
Planhat knows.

Planhat's analytics endpoint answers 200 to an activity that matches no company or end user and
then drops it. The only way to know beforehand is to ask the REST API which ids exist; this
client lists them, page by page, within the API's limits (a soft quota of 200 calls a minute, a
hard one of 150 requests a second), honouring 429 answers with ``Retry-After`` or Planhat's
``X-Rate-Limit-*`` headers. Knows nothing of the SDK or the store.

The token (``Authorization: Bearer``) is registered with :mod:`redact` before the first request,
so neither log lines nor error messages (which quote answer bodies) can carry it.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import requests

from target_planhat import redact
from target_planhat.errors import PlanhatError as PlanhatError
from target_planhat.errors import PlanhatRestAuthError, PlanhatRestError
from target_planhat.planhat import check_api_url, parse_retry_after
from target_planhat.shutdown import ShutdownGuard

DEFAULT_PLANHAT_API_URL = "https://api.planhat.com"
TOKEN_SETTING = "planhat_api_token"
URL_SETTING = "planhat_api_url"

#: Calls per minute this client allows itself: under Planhat's soft quota of 200, leaving room
#: for other clients of the same tenant.
CALLS_PER_MINUTE = 180
#: Requests per second: well under Planhat's hard limit of 150.
CALLS_PER_SECOND = 50
#: Planhat resets its call counter every 60-120 s; a wait read from its headers never exceeds it.
_MAX_WINDOW_WAIT = 120.0
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_BODY_EXCERPT = 300
_BASE_DELAY = 1.0
_MAX_DELAY = 60.0
#: A list longer than this many pages is a server that ignores ``offset``.
_MAX_PAGES = 100_000

logger = logging.getLogger("target_planhat.planhat_rest")


@dataclass(frozen=True)
class Model:
    """One Planhat list endpoint and the fields this target reads from it."""

    name: str  # "companies": also the word in messages and settings
    path: str
    fields: tuple[str, ...]


COMPANIES = Model("companies", "/companies", ("externalId",))
ENDUSERS = Model("endusers", "/endusers", ("externalId", "email"))
ASSETS = Model("assets", "/assets", ("externalId",))
PROJECTS = Model("projects", "/projects", ("externalId",))
MODELS = {m.name: m for m in (COMPANIES, ENDUSERS, ASSETS, PROJECTS)}


@dataclass
class RestStats:
    requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0


class Pacer:
    """Spaces calls so that no 60-second window holds more than ``per_minute`` of them and no
    two are closer than ``1 / per_second``; a server's "wait until" is honoured on top.

    A sliding window rather than a fixed rate: the few calls of a small tenant go out at once,
    while a large listing settles at the quota instead of running into 429s.
    """

    def __init__(
        self,
        per_minute: int = CALLS_PER_MINUTE,
        per_second: float = CALLS_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.interval = 1.0 / per_second
        self._clock = clock
        self._calls: collections.deque[float] = collections.deque()
        self._not_before = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next call may start."""
        now = self._clock()
        while self._calls and self._calls[0] <= now - 60.0:
            self._calls.popleft()
        wait = max(0.0, self._not_before - now)
        if self._calls:
            wait = max(wait, self._calls[-1] + self.interval - now)
        if len(self._calls) >= self.per_minute:
            wait = max(wait, self._calls[len(self._calls) - self.per_minute] + 60.0 - now)
        return wait

    def started(self) -> None:
        self._calls.append(self._clock())

    def hold_off(self, seconds: float) -> None:
        """No call for ``seconds`` from now (the server said its quota is spent)."""
        self._not_before = max(self._not_before, self._clock() + seconds)


def rate_limit_wait(headers: Any, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``Retry-After``, else ``X-Rate-Limit-Reset``, else a
    whole window when ``X-Rate-Limit-Remaining`` is 0; ``None`` when it says nothing.

    ``X-Rate-Limit-Reset`` is read as seconds to wait, or as a Unix time in seconds or
    milliseconds when it is that large. Planhat documents only ``-Limit`` and ``-Remaining``
    and a counter that resets every 60-120 s, so waits read from these headers are capped at
    120 s.
    """
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    if retry_after is not None:
        return retry_after
    now = time.time() if now is None else now
    reset = _number(headers.get("X-Rate-Limit-Reset") or headers.get("X-RateLimit-Reset"))
    remaining = _number(
        headers.get("X-Rate-Limit-Remaining") or headers.get("X-RateLimit-Remaining")
    )
    if reset is not None:
        if reset > 1e12:
            reset = reset / 1000.0 - now
        elif reset > 1e9:
            reset = reset - now
        return min(_MAX_WINDOW_WAIT, max(0.0, reset))
    if remaining is not None and remaining <= 0:
        return 60.0
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class PlanhatRestClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        request_timeout: float = 60.0,
        max_retry_seconds: float = 900.0,
        guard: ShutdownGuard | None = None,
        user_agent: str = "target-planhat",
        pacer: Pacer | None = None,
    ) -> None:
        redact.register(token)
        self.base = check_api_url(api_url, URL_SETTING, "the planhat_api_token travels in a header")
        self._timeout = (min(10.0, request_timeout), request_timeout)
        self._max_retry_seconds = max_retry_seconds
        self._guard = guard or ShutdownGuard()
        self.pacer = pacer or Pacer()
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": user_agent,
            }
        )
        self.stats = RestStats()

    def close(self) -> None:
        self._session.close()

    # --- lists -------------------------------------------------------------------------------

    def pages(self, model: Model, page_size: int, setting: str = "") -> Iterator[list[dict]]:
        """Every page of ``model``'s list, asking only for its fields, until a short page.

        A first page shorter than asked may also mean the server caps its pages below
        ``page_size``: one more request past it tells. If that one is not empty, the cap is
        taken as the page size from then on, with a WARNING naming ``setting``.
        """
        select = ",".join(model.fields)
        offset = 0
        full = page_size
        for number in range(_MAX_PAGES):
            page = self._get_list(model, {"limit": page_size, "offset": offset, "select": select})
            if page:
                yield page
            offset += len(page)
            if len(page) >= full:
                continue
            if number == 0 and page:
                # Fewer than asked on the very first page: a small list, or a capped page?
                probe = self._get_list(
                    model, {"limit": page_size, "offset": offset, "select": select}
                )
                if not probe:
                    return
                full = len(page)
                logger.warning(
                    "Planhat returned at most %d %s per page (%s=%d asked); paging by %d",
                    full,
                    model.name,
                    setting or "page size",
                    page_size,
                    full,
                )
                yield probe
                offset += len(probe)
                if len(probe) >= full:
                    continue
            return
        raise PlanhatRestError(
            f"GET {self.base}{model.path}: more than {_MAX_PAGES} pages; the server seems to "
            "ignore `offset`"
        )

    def values(self, model: Model, page_size: int, setting: str = "") -> dict[str, set[str]]:
        """``{field: the non-empty values of that field}`` over the whole list."""
        found: dict[str, set[str]] = {field: set() for field in model.fields}
        for page in self.pages(model, page_size, setting):
            for item in page:
                if not isinstance(item, dict):
                    continue
                for field, seen in found.items():
                    value = item.get(field)
                    if value is None or value == "" or isinstance(value, (dict, list, bool)):
                        continue
                    if isinstance(value, float) and value.is_integer():
                        value = int(value)
                    seen.add(str(value))
        return found

    # --- one request -------------------------------------------------------------------------

    def _get_list(self, model: Model, params: dict[str, Any]) -> list[Any]:
        url = f"{self.base}{model.path}"
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return self._attempt(url, params)
            except _Retryable as exc:
                attempt += 1
                elapsed = time.monotonic() - started
                wait = exc.wait
                if wait is None:
                    wait = random.uniform(0, min(_MAX_DELAY, _BASE_DELAY * 2**attempt))
                if elapsed + wait > self._max_retry_seconds:
                    raise PlanhatRestError(
                        f"GET {url} failed after retrying for {elapsed:.0f}s "
                        f"(max_retry_seconds={self._max_retry_seconds:g}): {exc.reason}"
                    ) from None
                self.stats.retries += 1
                logger.warning(
                    "GET %s failed (%s); retry %d in %.1fs", url, exc.reason, attempt, wait
                )
                self.pacer.hold_off(wait)

    def _attempt(self, url: str, params: dict[str, Any]) -> list[Any]:
        wait = self.pacer.delay()
        if wait > 0:
            self.stats.waited_seconds += wait
            self._guard.sleep(wait)
        self._guard.check()
        self.pacer.started()
        self.stats.requests += 1
        try:
            response = self._session.get(
                url, params=params, timeout=self._timeout, allow_redirects=False
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"{redact.redact(type(exc).__name__)}") from None
        except requests.RequestException as exc:
            raise PlanhatRestError(
                f"GET {url} failed: {redact.redact(type(exc).__name__)}"
            ) from None
        status = response.status_code
        headers = response.headers
        if 200 <= status < 300:
            self._note_quota(headers)
            try:
                data = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise PlanhatRestError(
                    f"GET {url}: the answer is not JSON: {self._excerpt(response)}"
                ) from None
            if not isinstance(data, list):
                raise PlanhatRestError(
                    f"GET {url}: expected a JSON array, got {type(data).__name__}: "
                    f"{self._excerpt(response)}"
                )
            return data
        reason = f"HTTP {status} {response.reason or ''}".strip()
        excerpt = self._excerpt(response)
        if status in (401, 403):
            raise PlanhatRestAuthError(
                f"{TOKEN_SETTING}: Planhat's REST API refused it at GET {url} ({reason}: "
                f"{excerpt or '(empty body)'}); it must be the API token of a service account "
                "that may read companies and end users"
            )
        if status in _RETRY_STATUSES or status >= 500:
            raise _Retryable(
                f"{reason}: {excerpt}" if excerpt else reason, rate_limit_wait(headers)
            )
        raise PlanhatRestError(f"GET {url}: {reason}: {excerpt or '(empty body)'}")

    def _note_quota(self, headers: Any) -> None:
        """A good answer that says the quota is spent: the next call waits for the reset
        instead of running into a 429."""
        remaining = _number(headers.get("X-Rate-Limit-Remaining"))
        if remaining is not None and remaining <= 0:
            self.pacer.hold_off(rate_limit_wait(headers) or 60.0)

    @staticmethod
    def _excerpt(response: requests.Response) -> str:
        return redact.redact(response.text[:_BODY_EXCERPT].replace("\n", " ")).strip()
