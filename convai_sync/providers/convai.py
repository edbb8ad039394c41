"""The Convai API over httpx: both Custom LLM dialects plus the character
endpoints, with retries, adaptive concurrency and lost-reply checks."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

import httpx

from ..dialects import CUSTOM_LLM, DIALECTS, LLM_MODELS, Dialect
from ..errors import ApiError, ConvaiSyncError
from ..model import CharacterState, LiveState, ModelState
from ..retry import AdaptiveLimit, RetryPolicy
from ..secrets import Secret, remember
from .transport import JsonTransport

DEFAULT_URL = "https://api.convai.com"
_HINTS = {
    401: "the account key was refused: set CONVAI_API_KEY to a valid Convai API key",
    429: "the API kept rate-limiting; wait a little and run again, or lower --parallelism",
}


def _checked_url(url: str) -> str:
    """The API base URL, or a clear error before any request is made."""
    try:
        parsed = httpx.URL(url) if "://" in url else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConvaiSyncError(f"API URL {url!r} is not an http(s) URL; set CONVAI_API_URL or "
                              "--api-url to e.g. https://api.convai.com")
    return url.rstrip("/")


class _Transient(Exception):
    def __init__(self, status: int | None, message: str, retry_after: float | None, ambiguous: bool):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.ambiguous = status, message, retry_after, ambiguous


class ConvaiClient:
    """One account. Thread-safe: the executor calls it from many threads."""

    def __init__(self, base_url: str, api_key: str, *, parallelism: int = 8,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0):
        if not api_key:
            raise ConvaiSyncError("no account key: set CONVAI_API_KEY to your Convai API key")
        remember(api_key)
        self.base_url = _checked_url(base_url)
        self._reached = False  # has the API answered this run? (see _once)
        self.retry = retry
        self.limit = AdaptiveLimit(parallelism)
        self.requests = 0
        self._count_lock = threading.Lock()
        self.dialect: Dialect | None = None
        # one pool, as many keep-alive connections as requests may be in flight
        self._http = JsonTransport(self.base_url, {"CONVAI-API-KEY": api_key}, timeout=timeout,
                                   pool_size=parallelism)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ConvaiClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------

    def call(self, path: str, body: dict[str, Any] | None, obj: str | None = None, *,
             landed: Callable[[], bool] | None = None) -> Any:
        """POST `body` to `path`; retry transient failures. For a write, `landed`
        re-reads live state: after a reply that may have been lost, it decides
        whether the write already took effect instead of repeating or failing it."""
        started = time.monotonic()
        maybe_committed = False
        for attempt in range(self.retry.max_attempts):
            try:
                return self._once(path, body, obj)
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
            time.sleep(delay)
        raise ApiError(f"POST {path}", obj, last.status,
                       f"{last.message} (gave up after {attempt + 1} attempts)",
                       _HINTS.get(last.status or 0, "the API or the network is failing; run again "
                                  "later: a re-run picks up where this one stopped"))

    def _once(self, path: str, body: dict[str, Any] | None, obj: str | None) -> Any:
        self.limit.acquire()
        try:
            with self._count_lock:
                self.requests += 1
            response = self._http.post(path, body if body is not None else {})
        except httpx.ConnectError as e:
            # Never reached at all: a wrong URL or no network, so waiting will not help.
            # Refused after the API has answered: a restart or a load balancer, so retry.
            if not self._reached:
                raise ApiError(f"POST {path}", obj, None, f"cannot connect to {self.base_url}: {e}",
                               "check CONVAI_API_URL / --api-url and your network") from None
            raise _Transient(None, f"connection failed: {e}", None, ambiguous=False) from None
        except (httpx.TimeoutException, httpx.TransportError) as e:
            raise _Transient(None, f"{type(e).__name__}: {e}", None, ambiguous=True) from None
        finally:
            self.limit.release()
        return self._decode(path, obj, response)

    def _decode(self, path: str, obj: str | None, response: httpx.Response) -> Any:
        self._reached = True
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if 200 <= status < 300:
            self.limit.success()
            if payload is None:
                raise ApiError(f"POST {path}", obj, status, "the reply is not JSON",
                               "is CONVAI_API_URL pointing at the Convai API?")
            return payload
        message = _message(payload) or response.text[:200] or response.reason_phrase
        retry_after = _retry_after(response)
        if status == 429:
            self.limit.throttle(retry_after)
            raise _Transient(status, message, retry_after, ambiguous=False)
        if status >= 500:
            raise _Transient(status, message, retry_after, ambiguous=True)
        raise ApiError(f"POST {path}", obj, status, message, _HINTS.get(status, ""))

    # -- models ------------------------------------------------------------

    def detect_dialect(self, preferred: str) -> tuple[Dialect, list[dict[str, Any]]]:
        """Choose the dialect; returns it with the model list the probe read."""
        if preferred != "auto":
            dialect = DIALECTS[preferred]
            return dialect, self._list_models(dialect)
        try:
            return LLM_MODELS, self._list_models(LLM_MODELS)
        except ApiError as e:
            if e.status != 404:
                raise
        try:
            return CUSTOM_LLM, self._list_models(CUSTOM_LLM)
        except ApiError as e:
            if e.status == 404:
                raise ApiError("POST /llm-models/list and /custom-llm/list", None, 404,
                               e.api_message, "neither Custom LLM API answers here; "
                               "check CONVAI_API_URL / --api-url") from None
            raise

    def _list_models(self, dialect: Dialect) -> list[dict[str, Any]]:
        payload = self.call(dialect.path("list"), None, "model list")
        items = payload.get("models") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            raise ApiError(f"POST {dialect.path('list')}", "model list", 200,
                           "unexpected reply shape (no list of models)",
                           "the API may have changed; please report this")
        self.dialect = dialect
        return [m for m in items if isinstance(m, dict) and m.get("model_group_name")]

    def register_model(self, group: str, fields: dict[str, Any], api_key: Secret) -> None:
        dialect = self._require_dialect()
        body = {"model_group_name": group, **{k: v for k, v in fields.items() if k in dialect.registrable},
                "api_key": api_key.reveal()}
        if dialect is LLM_MODELS:
            body.setdefault("is_uncensored", False)
        self.call(dialect.path("register"), body, f"model '{group}'",
                  landed=lambda: self._model_matches(group, fields))

    def update_model(self, group: str, fields: dict[str, Any], api_key: Secret | None = None) -> None:
        dialect = self._require_dialect()
        body: dict[str, Any] = {"model_group_name": group, **fields}
        if api_key is not None:
            body["api_key"] = api_key.reveal()
        # a key rotation cannot be read back: only the other fields can confirm it
        self.call(dialect.path("update"), body, f"model '{group}'",
                  landed=None if api_key is not None else lambda: self._model_matches(group, fields))

    def deregister_model(self, group: str) -> None:
        dialect = self._require_dialect()
        self.call(dialect.path("deregister"), {"model_group_name": group}, f"model '{group}'",
                  landed=lambda: group not in self._live_models())

    def _model_matches(self, group: str, fields: dict[str, Any]) -> bool:
        live = self._live_models().get(group)
        return live is not None and all(
            getattr(live, k) in (None, v) for k, v in fields.items() if hasattr(live, k))

    def _live_models(self) -> dict[str, ModelState]:
        dialect = self._require_dialect()
        return {m.model_group_name: m for m in map(_model_state, self._list_models(dialect))}

    def _require_dialect(self) -> Dialect:
        if self.dialect is None:
            raise RuntimeError("detect_dialect() must run before model writes")
        return self.dialect

    # -- characters ----------------------------------------------------------

    def list_characters(self) -> dict[str, CharacterState]:
        payload = self.call("/character/list", None, "character list")
        items = payload.get("characters") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            raise ApiError("POST /character/list", "character list", 200,
                           "unexpected reply shape (no 'characters' list)",
                           "the API may have changed; please report this")
        out = {s.char_id: s for s in map(_character_state, items) if s is not None}
        missing = [s for s in out.values() if s.model_group_name is None]
        if missing:  # the list did not carry their model: ask for each, concurrently
            with ThreadPoolExecutor(max_workers=self.limit.maximum) as pool:
                for state in pool.map(self._read_character, missing):
                    out[state.char_id] = state
        unknown = [cid for cid, s in out.items() if s.model_group_name is None]
        if unknown:  # planning blind could strand a character on a deregistered model
            raise ApiError("POST /character/get", f"character '{unknown[0]}'", 200,
                           f"neither /character/list nor /character/get returned the model of "
                           f"{len(unknown)} character(s)",
                           "the API may have changed; nothing was written. Please report this")
        return out

    def _read_character(self, listed: CharacterState) -> CharacterState:
        got = _character_state(self.get_character(listed.char_id))
        if got is None:
            return listed
        return replace(got, name=got.name or listed.name)

    def get_character(self, char_id: str) -> dict[str, Any]:
        return self.call("/character/get", {"charID": char_id}, f"character '{char_id}'")

    def update_character(self, char_id: str, fields: dict[str, Any]) -> None:
        self.call("/character/update", {"charID": char_id, **fields}, f"character '{char_id}'",
                  landed=lambda: self._character_matches(char_id, fields))

    def _character_matches(self, char_id: str, fields: dict[str, Any]) -> bool:
        live = _character_state(self.get_character(char_id))
        if live is None:
            return False
        want_t = fields.get("temperature")
        return (fields.get("model_group_name", live.model_group_name) == live.model_group_name
                and (want_t is None or (live.temperature is not None and abs(live.temperature - want_t) < 1e-9)))

    # -- whole account -------------------------------------------------------

    def read_state(self, preferred_dialect: str = "auto") -> LiveState:
        start = self.requests
        dialect, models = self.detect_dialect(preferred_dialect)
        live = LiveState(dialect.name, {m.model_group_name: m for m in map(_model_state, models)},
                         self.list_characters())
        live.requests = self.requests - start
        return live


def _model_state(raw: dict[str, Any]) -> ModelState:
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None
    flag = raw.get("is_uncensored")
    return ModelState(raw["model_group_name"], text("model_name"), text("base_url"),
                      text("display_name"), flag if isinstance(flag, bool) else None)


def _character_state(raw: Any) -> CharacterState | None:
    if not isinstance(raw, dict):
        return None
    cid = raw.get("character_id") or raw.get("charID")
    if not isinstance(cid, str):
        return None
    config = raw.get("personalised_prompt_config")
    config = config if isinstance(config, dict) else {}
    model = config.get("MODEL", raw.get("model_group_name"))
    temperature = config.get("TEMPERATURE", raw.get("temperature"))
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        temperature = None
    return CharacterState(cid, model if isinstance(model, str) else None,
                          float(temperature) if temperature is not None else None,
                          raw.get("character_name") if isinstance(raw.get("character_name"), str) else None)


def _message(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for key in ("message", "ERROR", "API_ERROR", "error", "detail"):
            if isinstance(payload.get(key), str):
                return payload[key]
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
