"""The Planhat client: one keep-alive session, the bulk user-activity endpoint, retries.

Knows nothing of the SDK. Every message it produces is built from the redacted URL, never from
the real one, because the tenant token is part of the path.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import logging
import random
import signal
import socket
import threading
import time
import weakref
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import backoff
import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from target_planhat import redact
from target_planhat.errors import PlanhatError, StopRequested
from target_planhat.shutdown import ShutdownGuard

DEFAULT_API_URL = "https://analytics.planhat.com"
ACTIVITIES_PATH = "/analytics/bulk/{tenant}"
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_BODY_EXCERPT = 300
_BASE_DELAY = 1.0
_MAX_DELAY = 60.0

logger = logging.getLogger("target_planhat.planhat")


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal; ``127.evil.example`` is a DNS name, not loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(
    api_url: str, setting: str = "api_url", secret: str = "the tenant token travels in the URL"
) -> str:
    """Return the normalised URL; refuse plain http except to this machine.

    ``setting`` and ``secret`` word the message for another URL setting (``planhat_api_url``,
    whose token travels in a header).
    """
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{setting}: {api_url!r} is not an http(s) URL")
    if parts.path.strip("/") or parts.query or parts.fragment or "@" in parts.netloc:
        # A path would be joined to the endpoint's own (http://host/analytics gave
        # /analytics/analytics/bulk/...), and Planhat answers 200 to paths it ignores.
        host = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        extra = (
            f"path {redact.redact(parts.path)!r}"
            if parts.path.strip("/")
            else "a query or fragment"
            if parts.query or parts.fragment
            else "user info"
        )
        raise ValueError(
            f"{setting}: must be the host only, like {host!r}; it has {extra} (the target adds "
            "the endpoint's path itself)"
        )
    if parts.scheme == "http":
        host = parts.hostname
        if not _is_loopback(host):
            raise ValueError(
                f"{setting}: plain http:// is refused for non-loopback hosts "
                f"({secret}); use https://"
            )
    return api_url.rstrip("/")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class _DeadlineAdapter(HTTPAdapter):
    """Knows its connections, so a whole request can be cut off at a deadline.

    ``requests``' read timeout bounds each wait for a byte, not the answer: a server that drips
    one byte a second keeps a POST (and a SIGTERM waiting for it) going for ever. ``abort()``
    shuts the sockets down from a timer thread; the blocked read then ends at once.
    """

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        connections = self.connections

        def tracked(base: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
            # A subclass of whichever pool class urllib3 hands in, made at run time.
            class Tracked(base):  # type: ignore[valid-type, misc]  # base is a variable
                def _new_conn(self) -> Any:
                    conn = super()._new_conn()
                    connections.add(conn)
                    return conn

            return Tracked

        self.poolmanager.pool_classes_by_scheme = {
            "http": tracked(HTTPConnectionPool),
            "https": tracked(HTTPSConnectionPool),
        }

    def abort(self) -> None:
        """Cut every connection (only one request is ever in flight)."""
        for conn in list(self.connections):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclass
class SendStats:
    """What the client did, read by the delivery report."""

    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    unconfirmed_requests: int = 0


class PlanhatClient:
    def __init__(
        self,
        api_url: str,
        tenant_token: str,
        *,
        request_timeout: float = 60.0,
        max_retry_seconds: float = 900.0,
        guard: ShutdownGuard | None = None,
        user_agent: str = "target-planhat",
        path: str = ACTIVITIES_PATH,
        bearer: str | None = None,
        what: str = "activities",
    ) -> None:
        """``path`` holds ``{tenant}`` (the tenant token goes there); ``bearer`` adds an
        ``Authorization: Bearer`` header (the dimension-data endpoint); ``what`` names the rows
        in messages."""
        redact.register(tenant_token)
        redact.register(bearer)
        base = check_api_url(api_url)
        self._url = base + path.replace("{tenant}", tenant_token)
        self.safe_url = base + path.replace("{tenant}", redact.MASK)
        self._what = what
        self._timeout = (min(10.0, request_timeout), request_timeout)
        self._max_retry_seconds = max_retry_seconds
        self._guard = guard or ShutdownGuard()
        self._request_timeout = request_timeout
        self._adapter = _DeadlineAdapter()
        self._session = requests.Session()
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._session.headers.update({"Content-Type": "application/json", "User-Agent": user_agent})
        self._bearer = bool(bearer)
        if bearer:
            self._session.headers["Authorization"] = f"Bearer {bearer}"
        self.stats = SendStats()
        self._abandoned = False
        self._next_wait = 0.0
        self._send = backoff.on_exception(
            self._wait_gen,
            _Retryable,
            max_time=max_retry_seconds,
            # The wait generator jitters itself (but not a server's Retry-After). backoff's own
            # sleep cannot be cut short from another thread, so it sleeps 0 and _on_backoff
            # waits instead, through the guard: a signal ends the wait in any thread.
            jitter=self._defer_wait,
            on_backoff=self._on_backoff,
            on_giveup=self._on_giveup,
            raise_on_giveup=True,
            logger=None,  # _on_backoff and _on_giveup log, with the reason and the wait
        )(self._attempt)

    def close(self) -> None:
        self._session.close()

    def abandon(self) -> None:
        """Give up the request in flight (from another thread): cut its connection.

        The POST then ends with ``StopRequested`` and counts as unconfirmed; an answer already
        in hand is not affected and is recorded as usual.
        """
        self._abandoned = True
        self._adapter.abort()

    def send(self, body: bytes, rows: int) -> bytes:
        """POST one JSON array of ``rows`` rows; return the answer's body once Planhat answered
        2xx (the dimension-data endpoint lists refused rows there)."""
        try:
            return self._send(body, rows)
        except _Retryable as exc:
            raise PlanhatError(
                f"Planhat did not accept a batch of {rows} {self._what} after retrying for "
                f"{self._max_retry_seconds:g}s (max_retry_seconds): {exc.reason}"
            ) from None

    @staticmethod
    def _wait_gen() -> Generator[float, Any, None]:
        attempt = 0
        # backoff primes the generator with next(): this first value is never used.
        exc = yield  # type: ignore[misc]  # a bare yield in a Generator[float, ...]
        while True:
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = retry_after
            else:
                delay = random.uniform(0, min(_MAX_DELAY, _BASE_DELAY * 2**attempt))  # full jitter
            attempt += 1
            exc = yield delay

    def _defer_wait(self, delay: float) -> float:
        self._next_wait = delay
        return 0.0

    def _on_backoff(self, details: Any) -> None:
        self.stats.retries += 1
        exc = details.get("exception")
        # backoff's own bound: never wait past max_retry_seconds.
        wait = max(0.0, min(self._next_wait, self._max_retry_seconds - details["elapsed"]))
        logger.warning(
            "POST %s failed (%s); retry %d in %.1fs (%.0fs of max_retry_seconds=%g used)",
            self.safe_url,
            getattr(exc, "reason", exc),
            details["tries"],
            wait,
            details["elapsed"],
            self._max_retry_seconds,
        )
        # A signal during the POST or the wait: stop instead of retrying.
        self._guard.sleep(wait)

    def _on_giveup(self, details: Any) -> None:
        exc = details.get("exception")
        logger.error(
            "POST %s failed %d times in %.0fs; giving up: %s",
            self.safe_url,
            details["tries"],
            details["elapsed"],
            getattr(exc, "reason", exc),
        )

    def _attempt(self, body: bytes, rows: int) -> bytes:
        self._guard.check()
        self.stats.requests += 1
        self.stats.bytes_sent += len(body)
        cut = threading.Event()

        def cut_off() -> None:
            cut.set()
            self._adapter.abort()

        deadline = threading.Timer(self._request_timeout, cut_off)
        deadline.daemon = True
        try:
            with self._guard.request():
                deadline.start()
                try:
                    response = self._session.post(
                        self._url, data=body, timeout=self._timeout, allow_redirects=False
                    )
                except requests.RequestException:
                    if self._abandoned:  # abandon() cut the connection: a second signal
                        raise StopRequested(self._guard.signum or signal.SIGTERM) from None
                    raise
                finally:
                    deadline.cancel()
        except StopRequested:
            # A second signal abandoned the POST: the body may have reached Planhat.
            self.stats.unconfirmed_requests += 1
            raise
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise _Retryable(f"{type(exc).__name__} connecting to {self.safe_url}") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if cut.is_set():
                self.stats.unconfirmed_requests += 1
                raise _Retryable(
                    f"no complete answer within request_timeout={self._request_timeout:g}s",
                ) from None
            if isinstance(exc, requests.exceptions.ChunkedEncodingError):
                self.stats.unconfirmed_requests += 1
                raise _Retryable(f"answer cut off ({redact.redact(type(exc).__name__)})") from None
            # Refused before sending: nothing arrived. Reset or dropped later: it may have.
            refused = "NewConnectionError" in repr(exc) or "Connection refused" in repr(exc)
            if not refused:
                self.stats.unconfirmed_requests += 1
            raise _Retryable(f"connection error ({redact.redact(type(exc).__name__)})") from None
        except requests.Timeout:
            self.stats.unconfirmed_requests += 1
            raise _Retryable(f"no answer within request_timeout={self._timeout[1]:g}s") from None
        except requests.RequestException as exc:
            raise PlanhatError(
                f"POST {self.safe_url} failed: {redact.redact(type(exc).__name__)}"
            ) from None
        status = response.status_code
        if not 200 <= status < 300:
            self._guard.release()  # no acknowledgement: a signal may stop the retries now
        else:
            answer = response.content
            response.close()
            if cut.is_set():
                # The status line came in time, the rest of the answer did not: Planhat said 2xx.
                logger.warning(
                    "POST %s: answer HTTP %d cut off at request_timeout=%gs after its status "
                    "line; counted as acknowledged",
                    self.safe_url,
                    status,
                    self._request_timeout,
                )
            return answer
        excerpt = redact.redact(response.text[:_BODY_EXCERPT].replace("\n", " "))
        reason = f"HTTP {status} {response.reason or ''}".strip()
        if status in _RETRY_STATUSES or status >= 500:
            raise _Retryable(
                f"{reason}: {excerpt}" if excerpt else reason,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        hint = ""
        if status == 413:
            hint = " (lower max_request_bytes)"
        elif status in (401, 403, 404):
            # Planhat's analytics endpoints have no other credential than the token in the path.
            tokens = "tenant_token and planhat_api_token" if self._bearer else "tenant_token"
            hint = f" (check {tokens}: Planhat refuses a token it does not know with {status})"
        raise PlanhatError(
            f"Planhat refused a batch of {rows} {self._what} at {self.safe_url}: "
            f"{reason}{hint}: {excerpt or '(empty body)'}"
        )
