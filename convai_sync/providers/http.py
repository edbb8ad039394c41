"""One HTTP session for every platform: any method, one keep-alive pool,
retries with backoff that honour Retry-After, run-wide adaptive concurrency on
429, and the lost-reply check. A platform supplies only its headers, how its
error bodies carry a message, and its hints."""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import unquote

import httpx

from ..errors import ApiError, ConvaiSyncError
from ..escape import inline_quoted
from ..retry import AdaptiveLimit, RetryPolicy
from ..secrets import remember, scrub
from .transport import JsonTransport, ReplyTooLarge

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
    # the message of a refusal that arrives inside a 2xx body, if the API does that
    refusal_in: Callable[[Any], str | None] = lambda payload: None


_USERINFO = re.compile(r"(?<=://)[^/?#@]*@")


def checked_url(url: str, api: Api) -> str:
    """The API base URL without credentials, or a clear error before any request.

    `https://user:pass@host` would put the password in the state file (committed
    by CI), the saved plan (an artifact) and every message naming the account;
    the transport never sent it either. So it is remembered as a secret and
    dropped: the account is the URL without it."""
    userinfo = _USERINFO.search(url)
    if userinfo:
        for part in (userinfo.group(0)[:-1], *userinfo.group(0)[:-1].split(":", 1)):
            remember(unquote(part))
            remember(part)
        url = _USERINFO.sub("", url, count=1)
        log.warning("ignoring the user name and password in %s: the API key authenticates",
                    api.env_url + " / --api-url")
    try:
        parsed = httpx.URL(url) if "://" in url else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConvaiSyncError(f"API URL {inline_quoted(url)} is not an http(s) URL; set "
                              f"{api.env_url} or --api-url to e.g. {api.example_url}")
    return url.rstrip("/")


def checked_key(secret: str, api: Api) -> None:
    """The account key goes into a header: one with whitespace or a control
    character (a stray newline from `echo` or a copied secret) would be refused
    by the HTTP library with the key quoted in the error, and retried as a
    network failure. Refuse it here, before any request, without showing it."""
    if not secret:
        raise ConvaiSyncError(f"no account key: set {api.env_key} to your {api.name} API key")
    bad = next((i for i, ch in enumerate(secret) if not "\x21" <= ch <= "\x7e"), None)
    if bad is not None:
        what = "whitespace" if secret[bad].isspace() else "a control or non-ASCII character"
        raise ConvaiSyncError(f"{api.env_key} contains {what} at position {bad + 1} of "
                              f"{len(secret)}; an API key is printable ASCII only: set it again "
                              "without the stray character (e.g. a trailing newline). "
                              "Nothing was sent.")


MAX_MESSAGE = 200  # of an error body quoted in a message
MIN_DEADLINE = 2.0  # seconds one call may always take, however small --retry-max-time is


class _Transient(Exception):
    def __init__(self, status: int | None, message: str, retry_after: float | None, ambiguous: bool):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.ambiguous = status, message, retry_after, ambiguous


class HttpSession:
    """Thread-safe: the executor calls it from many threads."""

    def __init__(self, api: Api, base_url: str, headers: dict[str, str], secret: str, *,
                 parallelism: int = 8, retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0):
        remember(secret)
        checked_key(secret, api)
        self.api = api
        self.base_url = checked_url(base_url, api)
        self._reached = False  # has the API answered this run? (see _once)
        self.retry = retry
        self.timeout = timeout
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
        # one deadline for the call: no Retry-After, pause or slow reply outlasts it
        deadline = started + max(self.retry.max_total, MIN_DEADLINE)
        maybe_committed = False
        for attempt in range(self.retry.max_attempts):
            try:
                return self._once(method, path, body, params, obj, deadline)
            except _Transient as t:
                maybe_committed |= t.ambiguous
                last = t
            except ApiError as e:
                # "already exists" / "not found" after a reply we lost: most likely our own
                # write; reads may lag behind it, so look again for a while before failing
                if maybe_committed and landed and e.status in _MAYBE_OURS and \
                        self._landed_eventually(landed, deadline):
                    return None
                raise
            if maybe_committed and landed and landed():
                return None
            if attempt + 1 == self.retry.max_attempts:
                break  # that was the last attempt: give up now, not after one more wait
            delay = self.retry.delay(attempt, last.retry_after)
            if time.monotonic() + delay > deadline:
                break
            _log_retry(call, obj, last, attempt + 1, self.retry.max_attempts, delay)
            time.sleep(delay)
        raise ApiError(call, obj, last.status, f"{last.message} (gave up after {attempt + 1} attempts "
                       f"in {time.monotonic() - started:.0f}s)",
                       self.api.hints.get(last.status or 0, "the API or the network is failing; run "
                                          "again later: a re-run picks up where this one stopped"))

    def _landed_eventually(self, landed: Callable[[], bool], deadline: float) -> bool:
        """Re-read until the write shows or the call's deadline comes: reads may lag
        behind writes, and a write refused as a duplicate of itself has landed."""
        attempt = 0
        while not landed():
            delay = self.retry.delay(attempt, None)
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            attempt += 1
        return True

    def _once(self, method: str, path: str, body: Any, params: dict[str, str] | None,
              obj: str | None, deadline: float) -> Any:
        if not self.limit.acquire(deadline):
            raise _Transient(429, "the API asked to pause past this request's deadline "
                             "(--retry-max-time)", None, ambiguous=False)
        try:
            with self._count_lock:
                self.requests += 1
            response = self._http.request(method, path, body, params, deadline)
        except ReplyTooLarge as e:
            raise ApiError(f"{method} {path}", obj, None, str(e) + "; stopped reading it",
                           f"is {self.api.env_url} pointing at the {self.api.name} API?") from None
        except httpx.ConnectError as e:
            # Never reached at all: a wrong URL or no network, so waiting will not help.
            # Refused after the API has answered: a restart or a load balancer, so retry.
            if not self._reached:
                raise ApiError(f"{method} {path}", obj, None, f"cannot connect to {self.base_url}: {e}",
                               f"check {self.api.env_url} / --api-url and your network") from None
            raise _Transient(None, f"connection failed: {e}", None, ambiguous=False) from None
        except httpx.LocalProtocolError as e:  # our own request is malformed: retrying cannot help
            raise ApiError(f"{method} {path}", obj, None, scrub(f"the request was refused before "
                           f"sending: {e}"), "this is a bug in convai-sync; please report it") from None
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
            refusal = self.api.refusal_in(payload)
            if refusal is not None:
                raise ApiError(call, obj, status, refusal)
            return payload
        # scrub before the cut: a cut key is no longer the value the scrubber knows
        message = scrub(self.api.message_of(payload) or response.text)[:MAX_MESSAGE] \
            or response.reason_phrase
        retry_after = _retry_after(response)
        if status == 429:
            self.limit.throttle(retry_after)
            raise _Transient(status, message, retry_after, ambiguous=False)
        if status >= 500:
            raise _Transient(status, message, retry_after, ambiguous=True)
        raise ApiError(call, obj, status, message, self.api.hints.get(status))


def _log_retry(call: str, obj: str | None, failure: _Transient, attempt: int, cap: int,
               delay: float) -> None:
    """One line per retry at -v, so a failing API is not a silent wait."""
    what = f"HTTP {failure.status}" if failure.status else "no reply"
    log.info("%s%s: %s (%s); retrying in %.2f s (attempt %d of at most %d)", call,
             f" ({obj})" if obj else "", what, failure.message, delay, attempt + 1, cap)


# Refusals a lost reply may hide our own landed write behind. 2xx: a refusal inside a
# success body carries no status of its own (Api.refusal_in).
_MAYBE_OURS = (200, 404, 409)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta or HTTP date); None when absent or absurd
    (nan, infinite, negative: a broken header must not become a hang or a crash).
    A huge value is kept: the call's deadline decides whether it is waited for."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


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
