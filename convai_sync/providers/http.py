"""One HTTP session for every platform: any method, one keep-alive pool,
retries with backoff that honour Retry-After, run-wide adaptive concurrency on
429, and the lost-reply check. A platform supplies only its headers, how its
error bodies carry a message, and its hints."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from ..errors import ApiError, ConvaiSyncError
from ..retry import AdaptiveLimit, RetryPolicy
from ..secrets import remember
from .transport import JsonTransport

log = logging.getLogger("convai_sync")


@dataclass(frozen=True)
class Api:
    """How one platform's API speaks, for messages and error bodies."""

    name: str                                   # "Convai", "LangBot", "Vapi"
    env_url: str                                # CONVAI_API_URL, ...
    env_key: str                                # CONVAI_API_KEY, ...
    example_url: str
    message_of: Callable[[Any], str | None]     # the message inside an error body
    hints: dict[int, str] = field(default_factory=dict)


def checked_url(url: str, api: Api) -> str:
    """The API base URL, or a clear error before any request is made."""
    try:
        parsed = httpx.URL(url) if "://" in url else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConvaiSyncError(f"API URL {url!r} is not an http(s) URL; set {api.env_url} or "
                              f"--api-url to e.g. {api.example_url}")
    return url.rstrip("/")


class _Transient(Exception):
    def __init__(self, status: int | None, message: str, retry_after: float | None, ambiguous: bool):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.ambiguous = status, message, retry_after, ambiguous


class HttpSession:
    """Thread-safe: the executor calls it from many threads."""

    def __init__(self, api: Api, base_url: str, headers: dict[str, str], secret: str, *,
                 parallelism: int = 8, retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0):
        if not secret:
            raise ConvaiSyncError(f"no account key: set {api.env_key} to your {api.name} API key")
        remember(secret)
        self.api = api
        self.base_url = checked_url(base_url, api)
        self._reached = False  # has the API answered this run? (see _once)
        self.retry = retry
        self.limit = AdaptiveLimit(parallelism)
        self.requests = 0
        self._count_lock = threading.Lock()
        # one pool, as many keep-alive connections as requests may be in flight
        self._http = JsonTransport(self.base_url, headers, timeout=timeout, pool_size=parallelism)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None, obj: str | None = None, *,
             params: dict[str, str] | None = None, landed: Callable[[], bool] | None = None) -> Any:
        """Send one request; retry transient failures. For a write, `landed`
        re-reads live state: after a reply that may have been lost, it decides
        whether the write already took effect instead of repeating or failing it."""
        call = f"{method} {path}"
        started = time.monotonic()
        maybe_committed = False
        for attempt in range(self.retry.max_attempts):
            try:
                return self._once(method, path, body, params, obj)
            except _Transient as t:
                maybe_committed |= t.ambiguous
                last = t
            except ApiError as e:
                if maybe_committed and landed and e.status in (404, 409) and landed():
                    return None
                raise
            if maybe_committed and landed and landed():
                return None
            delay = self.retry.delay(attempt, last.retry_after)
            if time.monotonic() - started + delay > self.retry.max_total:
                break
            _log_retry(call, obj, last, attempt + 1, self.retry.max_attempts, delay)
            time.sleep(delay)
        raise ApiError(call, obj, last.status, f"{last.message} (gave up after {attempt + 1} attempts)",
                       self.api.hints.get(last.status or 0, "the API or the network is failing; run "
                                          "again later: a re-run picks up where this one stopped"))

    def _once(self, method: str, path: str, body: Any, params: dict[str, str] | None,
              obj: str | None) -> Any:
        self.limit.acquire()
        try:
            with self._count_lock:
                self.requests += 1
            response = self._http.request(method, path, body, params)
        except httpx.ConnectError as e:
            # Never reached at all: a wrong URL or no network, so waiting will not help.
            # Refused after the API has answered: a restart or a load balancer, so retry.
            if not self._reached:
                raise ApiError(f"{method} {path}", obj, None, f"cannot connect to {self.base_url}: {e}",
                               f"check {self.api.env_url} / --api-url and your network") from None
            raise _Transient(None, f"connection failed: {e}", None, ambiguous=False) from None
        except (httpx.TimeoutException, httpx.TransportError) as e:
            raise _Transient(None, f"{type(e).__name__}: {e}", None, ambiguous=method != "GET") from None
        finally:
            self.limit.release()
        return self._decode(f"{method} {path}", obj, response)

    def _decode(self, call: str, obj: str | None, response: httpx.Response) -> Any:
        self._reached = True
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if 200 <= status < 300:
            self.limit.success()
            if payload is None:
                raise ApiError(call, obj, status, "the reply is not JSON",
                               f"is {self.api.env_url} pointing at the {self.api.name} API?")
            return payload
        message = self.api.message_of(payload) or response.text[:200] or response.reason_phrase
        retry_after = _retry_after(response)
        if status == 429:
            self.limit.throttle(retry_after)
            raise _Transient(status, message, retry_after, ambiguous=False)
        if status >= 500:
            raise _Transient(status, message, retry_after, ambiguous=True)
        raise ApiError(call, obj, status, message, self.api.hints.get(status, ""))


def _log_retry(call: str, obj: str | None, failure: _Transient, attempt: int, cap: int,
               delay: float) -> None:
    """One line per retry at -v, so a failing API is not a silent wait."""
    what = f"HTTP {failure.status}" if failure.status else "no reply"
    log.info("%s%s: %s (%s); retrying in %.2f s (attempt %d of at most %d)", call,
             f" ({obj})" if obj else "", what, failure.message, delay, attempt + 1, cap)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SessionClient:
    """What every platform's client shares: one HttpSession, its request count,
    closing, and use as a context manager."""

    platform = ""  # the registry name, for capabilities()

    def __init__(self, api: Api, base_url: str, headers: dict[str, str], secret: str, *,
                 parallelism: int = 8, retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0):
        self.http = HttpSession(api, base_url, headers, secret, parallelism=parallelism,
                                retry=retry, timeout=timeout)
        self.base_url = self.http.base_url
        self.limit = self.http.limit

    @property
    def requests(self) -> int:
        return self.http.requests

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "SessionClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
