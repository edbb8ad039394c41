"""Endpoint checks: does each model's endpoint answer, accept its key and serve
its model, the way the platform will call it (OpenAI-compatible: GET
{url}/models, then a one-token POST {url}/chat/completions)?

Every endpoint is checked concurrently, each with its own timeout, so a check
takes about as long as the slowest endpoint. Platforms say what their endpoints
are (`Platform.endpoints`); nothing here knows any platform. Keys go only into
the Authorization header: results name the ${VAR}, never the value.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Mapping, Sequence

import httpx

from .providers.base import Endpoint
from .providers.transport import JsonTransport, SharedPool
from .secrets import Secret, scrub

MAX_WORKERS = 64  # endpoints checked at once; each holds one connection


class Health(StrEnum):
    OK = "ok"
    SLOW = "slow"                          # answers, but slower than the threshold
    UNREACHABLE = "unreachable"            # no connection, or no answer in time
    KEY_REFUSED = "key refused"            # 401/403
    MODEL_NOT_SERVED = "model not served"  # the endpoint does not serve the model name
    FAILING = "failing"                    # answers with a server error or an unexpected reply
    NOT_CHECKED = "not checked"            # no key to send, skipped, or not OpenAI-compatible


FAILED = frozenset({Health.UNREACHABLE, Health.KEY_REFUSED, Health.MODEL_NOT_SERVED, Health.FAILING})


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: Endpoint
    health: Health
    why: str
    latency_ms: float | None = None

    @property
    def failed(self) -> bool:
        """Consumers on it would stop answering (slow and unchecked are not failures)."""
        return self.health in FAILED

    def line(self, width: int = 0) -> str:
        """model, status, why; a failure also says where the model is declared."""
        e = self.endpoint
        where = f" ({e.where})" if self.failed else ""
        return scrub(f"{e.model:<{width}}  {self.health.value:<16}  {self.why}{where}")

    def to_json(self) -> dict[str, Any]:
        e = self.endpoint
        return {"model": e.model, "url": e.url, "upstream_model": e.upstream, "where": e.where,
                "status": self.health.value, "failed": self.failed, "why": scrub(self.why),
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms)}


@dataclass(frozen=True)
class CheckSettings:
    timeout: float = 10.0                  # seconds, per request
    slow: float = 2.0                      # seconds a one-token reply may take before it is slow
    route: Callable[[str], str] = str      # where to send a URL's requests (the emulator's stub)
    skip: frozenset[str] = frozenset()     # models not to check (known down on purpose)


def check_endpoints(endpoints: Sequence[Endpoint], keys: Mapping[str, Sequence[Secret] | Secret],
                    settings: CheckSettings = CheckSettings()) -> list[EndpointHealth]:
    """Every endpoint's health, in the order given, checked concurrently."""
    if not endpoints:
        return []
    workers = min(MAX_WORKERS, len(endpoints))
    connections = SharedPool(workers)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda e: check_one(e, keys.get(e.model, ()), settings, connections),
                                 endpoints))
    finally:
        connections.close()


def check_one(endpoint: Endpoint, keys: Sequence[Secret] | Secret, settings: CheckSettings,
              connections: SharedPool | None = None) -> EndpointHealth:
    """One endpoint's health; never raises for what the endpoint does."""
    keys = (keys,) if isinstance(keys, Secret) else keys
    if endpoint.model in settings.skip:
        return EndpointHealth(endpoint, Health.NOT_CHECKED, "skipped (--skip-check)")
    if endpoint.unchecked:
        return EndpointHealth(endpoint, Health.NOT_CHECKED, endpoint.unchecked)
    if not keys:
        return EndpointHealth(endpoint, Health.NOT_CHECKED,
                              f"${{{endpoint.key_var}}} is not set, so there is no key to send")
    try:
        probe = _Probe(endpoint, keys[0], settings, connections)
    except httpx.InvalidURL as e:
        return EndpointHealth(endpoint, Health.FAILING, f"{endpoint.url} is not a usable URL: {e}")
    try:
        return probe.run()
    except _Verdict as v:
        return EndpointHealth(endpoint, v.health, scrub(v.why))
    finally:
        probe.close()


class _Verdict(Exception):
    def __init__(self, health: Health, why: str):
        super().__init__(why)
        self.health, self.why = health, why


class _Probe:
    """The two calls of one endpoint check."""

    def __init__(self, endpoint: Endpoint, key: Secret, settings: CheckSettings,
                 connections: SharedPool | None):
        self.endpoint, self.settings = endpoint, settings
        self.http = JsonTransport(settings.route(endpoint.url),
                                  {"Authorization": f"Bearer {key.reveal()}"},
                                  timeout=settings.timeout, pool_size=1, shared=connections)

    def close(self) -> None:
        self.http.close()

    def run(self) -> EndpointHealth:
        listing = self._call("GET", "/models")
        if listing.status_code in (401, 403):
            raise self._key_refused("GET /models", listing)
        listed = _model_ids(listing) if listing.status_code == 200 else None
        body = {"model": self.endpoint.upstream, "max_tokens": 1,
                "messages": [{"role": "user", "content": "ping"}]}
        started = time.monotonic()
        chat = self._call("POST", "/chat/completions", body)
        latency = (time.monotonic() - started) * 1000
        if chat.status_code == 200 and _is_completion(chat):
            return self._answered(latency)
        if chat.status_code == 200:
            raise _Verdict(Health.FAILING, f"POST /chat/completions at {self.endpoint.url} answered "
                           "HTTP 200 but not with a chat completion; is the base URL right "
                           "(does it need /v1)?")
        raise self._chat_failure(chat, listing.status_code, listed)

    def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            return self.http.request(method, path, body)
        except httpx.TimeoutException:
            raise _Verdict(Health.UNREACHABLE, f"{method} {self._url(path)}: no answer within "
                           f"{self.settings.timeout:g} s") from None
        except httpx.TransportError as e:
            raise _Verdict(Health.UNREACHABLE, f"{method} {self._url(path)}: cannot connect "
                           f"({_reason(e)}); check the URL and that the server is up") from None

    def _answered(self, latency: float) -> EndpointHealth:
        e = self.endpoint
        served = f"serves {e.upstream} at {e.url}"
        if latency > self.settings.slow * 1000:
            return EndpointHealth(e, Health.SLOW, f"{served}, but a one-token reply took "
                                  f"{latency:.0f} ms (over {self.settings.slow * 1000:.0f} ms)", latency)
        return EndpointHealth(e, Health.OK, f"{served} ({latency:.0f} ms)", latency)

    def _chat_failure(self, chat: httpx.Response, listing_status: int,
                      listed: list[str] | None) -> _Verdict:
        call, status, e = "POST /chat/completions", chat.status_code, self.endpoint
        if status in (401, 403):
            return self._key_refused(call, chat)
        if status == 404 and listing_status == 404:
            return _Verdict(Health.FAILING, f"neither GET /models nor {call} exists under {e.url}; "
                            "is the base URL right (does it need /v1)?")
        if status == 404 or (status in (400, 422) and _model_unknown(chat, e.upstream, listed)):
            served = f"; it lists: {', '.join(listed[:5])}" if listed else ""
            return _Verdict(Health.MODEL_NOT_SERVED, f"{call} with model {e.upstream!r} answered "
                            f"HTTP {status}: {_message(chat).rstrip('.')}{served}")
        return _Verdict(Health.FAILING, f"{call} at {e.url} answered HTTP {status}: {_message(chat)}")

    def _key_refused(self, call: str, response: httpx.Response) -> _Verdict:
        # The body of a 401 may quote part of the key: say only which variable it was.
        return _Verdict(Health.KEY_REFUSED, f"{call} at {self.endpoint.url} answered HTTP "
                        f"{response.status_code}: the key in ${{{self.endpoint.key_var}}} was refused")

    def _url(self, path: str) -> str:
        return self.endpoint.url.rstrip("/") + path


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_completion(response: httpx.Response) -> bool:
    data = _json(response)
    return isinstance(data, dict) and isinstance(data.get("choices"), list)


def _model_ids(response: httpx.Response) -> list[str] | None:
    data = _json(response)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [str(i["id"]) for i in items if isinstance(i, dict) and "id" in i]


def _model_unknown(response: httpx.Response, model: str, listed: list[str] | None) -> bool:
    """A 400 that is about the model: OpenAI's code, or a model the listing lacks."""
    data = _json(response)
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code == "model_not_found" or (listed is not None and model not in listed)


def _message(response: httpx.Response) -> str:
    data = _json(response)
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error or data.get("message")
        if message:
            return str(message)[:200]
    return response.text[:200].strip() or response.reason_phrase


def _reason(e: httpx.TransportError) -> str:
    text = str(e) or type(e).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "host not found"
    return text


def health_lines(results: Sequence[EndpointHealth], indent: str = "  ") -> list[str]:
    width = max((len(r.endpoint.model) for r in results), default=0)
    return [indent + r.line(width) for r in results]


def health_summary(results: Sequence[EndpointHealth]) -> str:
    """'3 endpoints: 2 ok, 1 unreachable.'"""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.health.value] = counts.get(r.health.value, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    noun = "endpoint" if len(results) == 1 else "endpoints"
    return f"{len(results)} {noun}: {parts}." if results else "No endpoints to check."
