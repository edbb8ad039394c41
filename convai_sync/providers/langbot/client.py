"""The LangBot HTTP API (4.11): LLM models and pipelines, on the shared HTTP
session (retries, 429 back-off, lost-reply checks).

What LangBot does that shapes this client (../shared/LANGBOT_API.md):
- names are not unique and uuids are server-assigned, so manifest keys are
  mapped to uuids here: the state file's record first, then a `uuid:` pin,
  then adoption by name (narrowed by base_url and requester); an ambiguous
  match is refused, naming the uuids;
- a 500 may be half-applied: every write has a lost-reply check that re-reads;
- a pipeline PUT must carry the whole config (a fragment wipes the rest), so a
  bind reads the pipeline, changes only the model reference and writes the
  whole config back;
- an inline provider is find-or-create and never deleted, so a rotated key or a
  moved base_url leaves a provider behind: finish() removes the ones this
  apply emptied;
- keys come back in clear, so key drift is visible: the live keys are compared
  with the manifest's here and only a marker leaves this module.
"""
from __future__ import annotations

import copy
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ...errors import ApiError, ConvaiSyncError
from ...model import ConsumerState, LiveState, ModelState
from ...plan import Change
from ...retry import RetryPolicy
from ...secrets import SENSITIVE, Secret, remember
from ..base import Capabilities, Desired, DesiredModel
from ..http import Api, SessionClient
from ..replies import checked_items, refuse_paging

MODELS = "/api/v1/provider/models/llm"
PIPELINES = "/api/v1/pipelines"
PROVIDERS = "/api/v1/provider/providers"
BUILTIN_PROVIDER = "00000000-0000-0000-0000-000000000000"
KEYS_DIFFER = "(sensitive, differs from the manifest)"
PROVIDER_FIELDS = ("requester", "base_url")
MODEL_FIELDS = ("name", "requester", "base_url", "abilities", "extra_args", "context_length")


def _message(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("msg"), str):
        code = payload.get("code")
        return payload["msg"] if code in (None, -1) else f"{payload['msg']} ({code})"
    return None


API = Api("LangBot", "LANGBOT_API_URL", "LANGBOT_API_KEY", "http://127.0.0.1:5300", _message, {
    401: "the API key was refused: set LANGBOT_API_KEY to LangBot's global API key "
         "(api.global_api_key) or a key made in its settings",
    404: "the object is gone from LangBot; run plan again",
    429: "LangBot kept rate-limiting; wait a little and run again, or lower --parallelism",
})


class LangBotClient(SessionClient):
    """One LangBot workspace. Thread-safe for the executor's concurrent writes."""

    def __init__(self, base_url: str, api_key: str, *, parallelism: int = 8,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0, **_: Any):
        super().__init__(API, base_url, {"X-API-Key": api_key}, api_key,
                         parallelism=parallelism, retry=retry, timeout=timeout)
        self._uuids: dict[str, str] = {}        # model name (key or label) -> uuid
        self._providers: dict[str, str] = {}    # model uuid -> its provider's uuid, as read
        self._touched: set[str] = set()         # providers a write of this run moved off
        self._managed: set[str] = set()         # names that are manifest keys
        self._known_providers: set[tuple[str, str, str]] = set()  # see _first_of_provider
        self._guard = threading.Lock()
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}

    def capabilities(self) -> Capabilities:
        from . import capabilities
        return capabilities("langbot")

    # -- reading ---------------------------------------------------------------

    def _data(self, method: str, path: str, body: Any = None, obj: str | None = None, **kw: Any) -> Any:
        payload = self.http.call(method, path, body, obj, **kw)
        if payload is None:
            return None  # a lost reply that the check found had landed
        if not isinstance(payload, dict) or payload.get("code") != 0:
            raise ApiError(f"{method} {path}", obj, 200, f"unexpected reply envelope: "
                           f"{str(payload)[:200]}", "is LANGBOT_API_URL pointing at LangBot?")
        return payload.get("data")

    def _list(self, path: str, key: str, what: str) -> list[dict[str, Any]]:
        data = self._data("GET", path, obj=what)
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ApiError(f"GET {path}", what, 200, f"unexpected reply shape (no '{key}' list)",
                           "the API may have changed; nothing was written. Please report this")
        refuse_paging(f"GET {path}", what, data, len(items))
        return checked_items(f"GET {path}", what, items, ("uuid",), ("name",))

    def list_models(self) -> list[dict[str, Any]]:
        items = self._list(MODELS, "models", "model list")
        for item in items:
            _check_model(item)
            keys = (_provider_of(item) or {}).get("api_keys")
            if isinstance(keys, str):
                keys = [keys]
            for key in keys if isinstance(keys, list) else []:
                remember(str(key))  # returned in clear: never let one reach output
        return items

    def ping(self, variant: str = "langbot") -> str:
        return f"{len(self.list_models())} LLM model(s)"

    def read_state(self, variant: str = "langbot", desired: Desired | None = None,
                   memo: dict[str, Any] | None = None) -> LiveState:
        start = self.requests
        with ThreadPoolExecutor(max_workers=2) as pool:  # two lists, one round trip
            models_read = pool.submit(self.list_models)
            pipelines = self._list(PIPELINES, "pipelines", "pipeline list")
            raw = models_read.result()
        names = _match(raw, desired, (memo or {}).get("ids", {}))
        self._uuids = {name: uuid for uuid, name in names.items()}
        self._managed = {m.name for m in desired.models} if desired else set(self._managed)
        self._providers = {m["uuid"]: m.get("provider_uuid") for m in raw}
        self._known_providers = {_provider_identity(p) for m in raw
                                 if (p := _provider_of(m)) is not None}
        keys = desired.keys if desired else {}
        models = {names[m["uuid"]]: ModelState(names[m["uuid"]], _fields(m, keys.get(names[m["uuid"]])))
                  for m in raw}
        consumers = {p["uuid"]: _pipeline_state(p, names) for p in pipelines}
        live = LiveState("langbot", models, consumers, platform="langbot")
        live.requests = self.requests - start
        return live

    # -- models ----------------------------------------------------------------

    def register(self, change: Change, secrets: Sequence[Secret]) -> None:
        assert change.after is not None
        body = _model_body(change.after, MODEL_FIELDS, secrets)
        # Two registers of the same name and base_url are told apart only by
        # which uuid each already claimed: run them one after the other.
        with self._lock_for(change.after.get("name"), change.after.get("base_url")):
            data = self._first_of_provider(body, lambda: self._data(
                "POST", MODELS, body, f"model '{change.id}'", landed=lambda: self._adopt_new(change)))
            if isinstance(data, dict) and isinstance(data.get("uuid"), str):
                self._uuids[change.id] = data["uuid"]

    def _first_of_provider(self, body: dict[str, Any], write: Any) -> Any:
        """LangBot finds or creates an inline provider with a SELECT then an INSERT
        and no lock, so concurrent writes for a provider that does not exist yet
        each create one (seen on 4.11.2). The first such write runs alone."""
        if "provider" not in body:
            return write()
        identity = _provider_identity(body["provider"])
        with self._lock_for("provider", identity):
            if identity not in self._known_providers:
                result = write()
                self._known_providers.add(identity)
                return result
        return write()

    def _lock_for(self, *identity: Any) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(identity, threading.Lock())

    def _adopt_new(self, change: Change) -> bool:
        """After a lost reply: did an unclaimed model with this name and base_url appear?"""
        assert change.after is not None
        claimed = set(self._uuids.values())
        for m in self.list_models():
            if (m["uuid"] not in claimed and m.get("name") == change.after.get("name")
                    and _fields(m, None)["base_url"] == change.after.get("base_url")):
                self._uuids[change.id] = m["uuid"]
                return True
        return False

    def update(self, change: Change, secrets: Sequence[Secret] | None) -> None:
        assert change.after is not None
        uuid = self._uuid(change.id)
        body = _model_body(change.after, change.fields, secrets)
        if "provider" in body:
            self._touched.add(self._providers.get(uuid) or "")
        self._first_of_provider(body, lambda: self._data(
            "PUT", f"{MODELS}/{uuid}", body, f"model '{change.id}'",
            landed=lambda: self._model_matches(uuid, change, secrets)))

    def _model_matches(self, uuid: str, change: Change, secrets: Sequence[Secret] | None) -> bool:
        """Did the update land? Every field it sends, keys included, reads back."""
        found = next((m for m in self.list_models() if m["uuid"] == uuid), None)
        if found is None:
            return False
        have = _fields(found, secrets)
        return all(have.get(k) == change.after[k] for k in change.fields  # type: ignore[index]
                   if k in MODEL_FIELDS) and (secrets is None or have.get("api_keys") == SENSITIVE)

    def replace(self, change: Change, secrets: Sequence[Secret]) -> None:
        raise ConvaiSyncError(f"model '{change.id}': LangBot updates every field in place; a "
                              "replace should never be planned. Please report this")

    def deregister(self, change: Change) -> None:
        uuid = self._uuid(change.id)
        self._touched.add(self._providers.get(uuid) or "")
        self._data("DELETE", f"{MODELS}/{uuid}", None, f"model '{change.id}'",
                   landed=lambda: all(m["uuid"] != uuid for m in self.list_models()))
        self._uuids.pop(change.id, None)

    def _uuid(self, name: str) -> str:
        try:
            return self._uuids[name]
        except KeyError:
            raise ConvaiSyncError(f"model '{name}': no LangBot uuid is known for it (was it "
                                  "registered by this run?); run plan again") from None

    # -- pipelines -------------------------------------------------------------

    def bind(self, change: Change) -> None:
        assert change.after is not None
        target = self._uuid(change.after["model"])
        path = f"{PIPELINES}/{change.id}"
        obj = f"pipeline '{change.id}'"
        pipeline = self._data("GET", path, None, obj)["pipeline"]
        config = rebound(pipeline.get("config"), target, obj)
        self._data("PUT", path, {"config": config}, obj,
                   landed=lambda: model_ref(self._data("GET", path, None, obj)["pipeline"]
                                            .get("config")) == target)

    # -- after an apply --------------------------------------------------------

    def finish(self) -> list[str]:
        """Delete the provider objects this apply left with no model: LangBot
        never does, and an old one still holds the rotated key."""
        touched = self._touched - {"", BUILTIN_PROVIDER}
        if not touched:
            return []
        empty = [p for p in self._list(PROVIDERS, "providers", "provider list")
                 if p.get("uuid") in touched and p.get("llm_count") == 0
                 and not p.get("embedding_count") and not p.get("rerank_count")]
        for p in empty:
            self._data("DELETE", f"{PROVIDERS}/{p['uuid']}", None, f"provider '{p['uuid']}'",
                       landed=lambda: True)
        self._touched.clear()
        return [f"Removed {len(empty)} LangBot provider object(s) that this apply left with no "
                "model (LangBot keeps them, with their keys, otherwise)."] if empty else []

    def memo(self) -> dict[str, Any]:
        ids = {name: uuid for name, uuid in sorted(self._uuids.items()) if name in self._managed}
        return {"ids": ids} if ids else {}


def _provider_identity(provider: dict[str, Any]) -> tuple[str, str, str]:
    """How LangBot matches an inline provider: requester, base_url and the
    sorted keys (hashed: the keys themselves are not kept)."""
    keys = "\n".join(sorted(str(k) for k in provider.get("api_keys") or []))
    return (str(provider.get("requester")), str(provider.get("base_url", "")).rstrip("/"),
            hashlib.sha256(keys.encode()).hexdigest())


def _check_model(item: dict[str, Any]) -> None:
    """Refuse a list we cannot plan on safely (a wrong type breaks LangBot too)."""
    if not isinstance(item.get("uuid"), str) or not isinstance(item.get("name"), str):
        raise ApiError(f"GET {MODELS}", f"model {item.get('uuid')!r}", 200,
                       f"a model has a non-string uuid or name ({item.get('name')!r})",
                       "fix or delete that model in LangBot (its list breaks too); nothing was written")


def _provider_of(item: dict[str, Any]) -> dict[str, Any] | None:
    """A listed model's inline provider, or None where the reply holds no object."""
    provider = item.get("provider")
    return provider if isinstance(provider, dict) else None


def _fields(item: dict[str, Any], keys: Sequence[Secret] | None) -> dict[str, Any]:
    provider = _provider_of(item) or {}
    out = {"name": item.get("name"), "requester": provider.get("requester"),
           "base_url": str(provider.get("base_url") or "").rstrip("/") or None,
           "abilities": item.get("abilities"), "extra_args": item.get("extra_args"),
           "context_length": item.get("context_length")}
    live_keys = provider.get("api_keys")
    if keys is not None and isinstance(live_keys, list):
        same = [str(k) for k in live_keys] == [s.reveal() for s in keys]
        out["api_keys"] = SENSITIVE if same else KEYS_DIFFER
    return out


def _model_body(after: dict[str, Any], fields: Sequence[str],
                secrets: Sequence[Secret] | None) -> dict[str, Any]:
    """What a POST or PUT sends: the model's own fields, and the whole inline
    provider when any part of it changes (a provider is found or made by
    requester + base_url + keys, so all three go together)."""
    body = {k: after[k] for k in fields if k in ("name", "abilities", "extra_args", "context_length")
            and k in after}
    if secrets is not None or any(k in PROVIDER_FIELDS for k in fields):
        if secrets is None:
            raise ConvaiSyncError("internal error: a provider change without its keys; please report this")
        body["provider"] = {"requester": after["requester"], "base_url": after["base_url"],
                            "api_keys": [s.reveal() for s in secrets]}
    return body


def _match(raw: list[dict[str, Any]], desired: Desired | None,
           recorded: dict[str, str]) -> dict[str, str]:
    """uuid -> name for every live model: a manifest key where one matches, else
    'name@uuid' (unmanaged). Refuses an ambiguous adoption, naming the uuids."""
    names: dict[str, str] = {}
    problems: list[str] = []
    live = {m["uuid"]: m for m in raw}
    for spec in desired.models if desired else []:
        uuid = _claim(spec, live, names, recorded.get(spec.name), problems)
        if uuid:
            names[uuid] = spec.name
    if problems:
        raise ConvaiSyncError("cannot tell which live LangBot model is meant; nothing was written:\n"
                              + "\n".join(f"  - {p}" for p in problems))
    for uuid, m in live.items():
        names.setdefault(uuid, f"{m['name']}@{uuid}")
    return names


def _claim(spec: DesiredModel, live: dict[str, dict[str, Any]], taken: dict[str, str],
           recorded: str | None, problems: list[str]) -> str | None:
    for pinned in (spec.server_id, recorded):
        if pinned and pinned in live and pinned not in taken:
            return pinned
    if spec.server_id:
        problems.append(f"{spec.where}: uuid {spec.server_id} is not a live model; remove the pin "
                        "to adopt by name, or to register a new model")
        return None
    free = [u for u, m in live.items() if u not in taken and m["name"] == spec.fields["name"]]
    if len(free) > 1:
        close = [u for u in free if _fields(live[u], None)["base_url"] == spec.fields["base_url"]
                 and _fields(live[u], None)["requester"] == spec.fields["requester"]]
        free = close or free
    if len(free) > 1:
        problems.append(f"{spec.where}: model '{spec.name}' matches {len(free)} live models named "
                        f"'{spec.fields['name']}' ({', '.join(sorted(free))}); pin one with "
                        "`uuid:` in this entry")
        return None
    return free[0] if free else None


def model_ref(config: Any) -> str | None:
    """The pipeline's model uuid: config.ai.runner_config[<runner id>].model.primary."""
    slot = _model_slot(config)
    primary = slot.get("primary") if slot is not None else None
    return primary if isinstance(primary, str) else None


def _model_slot(config: Any) -> dict[str, Any] | None:
    ai = config.get("ai") if isinstance(config, dict) else None
    runner = ai.get("runner") if isinstance(ai, dict) else None
    runner_id = runner.get("id") if isinstance(runner, dict) else None
    runners = ai.get("runner_config") if isinstance(ai, dict) else None
    slot = runners.get(runner_id) if isinstance(runners, dict) and runner_id else None
    model = slot.get("model") if isinstance(slot, dict) else None
    return model if isinstance(model, dict) else None


def rebound(config: Any, target: str, obj: str) -> dict[str, Any]:
    """A copy of the whole config with only the model reference changed (the rest
    is sent back as read: LangBot's PUT replaces the whole config)."""
    new = copy.deepcopy(config)
    slot = _model_slot(new)
    if slot is None:
        raise ConvaiSyncError(f"{obj}: its runner has no model setting (config.ai.runner_config"
                              "[<runner id>].model); choose a runner with a model in LangBot first")
    slot["primary"] = target
    return new


def _pipeline_state(p: dict[str, Any], names: dict[str, str]) -> ConsumerState:
    ref = model_ref(p.get("config"))
    model = names.get(ref, ref) if ref else None
    return ConsumerState(p["uuid"], model, {}, p.get("name") if isinstance(p.get("name"), str) else None)
