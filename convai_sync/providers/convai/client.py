"""The Convai API: both Custom LLM dialects plus the character endpoints, on
the shared HTTP session (retries, adaptive concurrency, lost-reply checks)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Sequence

from ...errors import ApiError
from ...model import ConsumerState, LiveState, ModelState
from ...plan import Change
from ...retry import RetryPolicy
from ...secrets import Secret
from ..base import Capabilities, Desired
from ..http import Api, SessionClient
from ..replies import checked_items, list_in
from .dialects import CUSTOM_LLM, DIALECTS, LLM_MODELS, Dialect

DEFAULT_URL = "https://api.convai.com"
MODEL_TEXT = ("model_name", "base_url", "display_name")
CHARACTER_IDS = ("character_id", "charID")


def _message(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for key in ("message", "ERROR", "API_ERROR", "error", "detail"):
            if isinstance(payload.get(key), str):
                return payload[key]
    return None


def _refusal(payload: Any) -> str | None:
    """An error inside a 200 body ({"status": "error"} or {"ERROR": ...}): the real API
    may answer so (CONVAI_API.md), and taking it for success would record a write that
    never happened."""
    if not isinstance(payload, dict) or any(isinstance(v, list) for v in payload.values()):
        return None  # a list reply: replies.py refuses its error envelope, saying nothing was written
    status = payload.get("status", payload.get("STATUS"))
    if (isinstance(status, str) and status.lower() == "error") or "ERROR" in payload \
            or "API_ERROR" in payload:
        return f"{_message(payload) or 'error'} (inside an HTTP 200 reply)"
    return None


API = Api("Convai", "CONVAI_API_URL", "CONVAI_API_KEY", DEFAULT_URL, _message, {
    401: "the account key was refused: set CONVAI_API_KEY to a valid Convai API key",
    429: "the API kept rate-limiting; wait a little and run again, or lower --parallelism",
}, refusal_in=_refusal)


class ConvaiClient(SessionClient):
    """One account. Thread-safe: the executor calls it from many threads."""

    def __init__(self, base_url: str, api_key: str, *, parallelism: int = 8,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0, **_: Any):
        super().__init__(API, base_url, {"CONVAI-API-KEY": api_key}, api_key,
                         parallelism=parallelism, retry=retry, timeout=timeout)
        self.dialect: Dialect | None = None

    def call(self, path: str, body: dict[str, Any] | None, obj: str | None = None, *,
             landed: Any = None) -> Any:
        """Every Convai call is a POST with a JSON body."""
        return self.http.call("POST", path, body if body is not None else {}, obj, landed=landed)

    def capabilities(self) -> Capabilities:
        from . import capabilities
        return capabilities(self._require_dialect().name)

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
        call = f"POST {dialect.path('list')}"
        items = checked_items(call, "model list", list_in(call, "model list", payload, "models"),
                              ("model_group_name",), MODEL_TEXT)
        self.dialect = dialect
        return items

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
        return live is not None and all(live.fields.get(k) in (None, v) for k, v in fields.items())

    def _live_models(self) -> dict[str, ModelState]:
        dialect = self._require_dialect()
        return {m.name: m for m in map(_model_state, self._list_models(dialect))}

    def _require_dialect(self) -> Dialect:
        if self.dialect is None:
            raise RuntimeError("detect_dialect() must run before model writes")
        return self.dialect

    # -- the engine's Client interface ----------------------------------------

    def register(self, change: Change, secrets: Sequence[Secret]) -> None:
        self.register_model(change.id, _sent(change), secrets[0])

    def update(self, change: Change, secrets: Sequence[Secret] | None) -> None:
        self.update_model(change.id, _sent(change), secrets[0] if secrets else None)

    def replace(self, change: Change, secrets: Sequence[Secret]) -> None:
        self.deregister_model(change.id)
        assert change.after is not None
        self.register_model(change.id, {k: v for k, v in change.after.items() if k != "api_key"},
                            secrets[0])

    def deregister(self, change: Change) -> None:
        self.deregister_model(change.id)

    def bind(self, change: Change) -> None:
        self.update_character(change.id, _sent(change))

    def finish(self) -> list[str]:
        return []

    def memo(self) -> dict[str, Any]:
        return {}  # Convai names models by model_group_name: nothing to remember

    # -- characters ----------------------------------------------------------

    def list_characters(self) -> dict[str, ConsumerState]:
        payload = self.call("/character/list", None, "character list")
        call = "POST /character/list"
        items = checked_items(call, "character list", list_in(call, "character list", payload,
                                                              "characters"),
                              CHARACTER_IDS, ("character_name", "model_group_name"))
        out = {s.id: s for s in map(_character_state, items) if s is not None}
        missing = [s for s in out.values() if s.model is None]
        if missing:  # the list did not carry their model: ask for each, concurrently
            with ThreadPoolExecutor(max_workers=self.limit.maximum) as pool:
                for state in pool.map(self._read_character, missing):
                    out[state.id] = state
        unknown = [cid for cid, s in out.items() if s.model is None]
        if unknown:  # planning blind could strand a character on a deregistered model
            raise ApiError("POST /character/get", f"character '{unknown[0]}'", 200,
                           f"neither /character/list nor /character/get returned the model of "
                           f"{len(unknown)} character(s)",
                           "the API may have changed; nothing was written. Please report this")
        return out

    def _read_character(self, listed: ConsumerState) -> ConsumerState:
        got = _character_state(self.get_character(listed.id))
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
        want_t, have_t = fields.get("temperature"), live.fields.get("temperature")
        return (fields.get("model_group_name", live.model) == live.model
                and (want_t is None or (have_t is not None and abs(have_t - want_t) < 1e-9)))

    # -- whole account -------------------------------------------------------

    def ping(self, variant: str = "auto") -> str:
        dialect, models = self.detect_dialect(variant)
        return f"{len(models)} custom model(s), {dialect.name} dialect"

    def read_state(self, preferred_dialect: str = "auto", desired: Desired | None = None,
                   memo: dict[str, Any] | None = None) -> LiveState:
        start = self.requests
        dialect, models = self.detect_dialect(preferred_dialect)
        live = LiveState(dialect.name, {m.name: m for m in map(_model_state, models)},
                         self.list_characters())
        live.requests = self.requests - start
        return live


def _sent(change: Change) -> dict[str, Any]:
    """The fields a write sends: what differs, never the api_key placeholder."""
    assert change.after is not None
    return {k: change.after[k] for k in change.fields if k != "api_key"}


def _model_state(raw: dict[str, Any]) -> ModelState:
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None
    flag = raw.get("is_uncensored")
    return ModelState(raw["model_group_name"], {
        "model_name": text("model_name"), "base_url": text("base_url"),
        "display_name": text("display_name"),
        "is_uncensored": flag if isinstance(flag, bool) else None})


def _character_state(raw: Any) -> ConsumerState | None:
    if not isinstance(raw, dict):
        return None
    cid = next((raw[k] for k in CHARACTER_IDS if raw.get(k) is not None), None)
    if not isinstance(cid, str):
        return None
    config = raw.get("personalised_prompt_config")
    config = config if isinstance(config, dict) else {}
    model = config.get("MODEL", raw.get("model_group_name"))
    temperature = config.get("TEMPERATURE", raw.get("temperature"))
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        temperature = None
    return ConsumerState(cid, model if isinstance(model, str) else None,
                         {"temperature": float(temperature) if temperature is not None else None},
                         raw.get("character_name") if isinstance(raw.get("character_name"), str) else None)
