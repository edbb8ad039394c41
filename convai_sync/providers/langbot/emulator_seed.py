"""Seeds for the LangBot emulator: the state it starts with, and the demo.

    models:    [{name, base_url, api_keys, requester?, abilities?, extra_args?,
                 context_length?, uuid?}]
    pipelines: [{name, model, uuid?, prompt?, description?}]

A model's `name` is the upstream model id (LangBot sends it as "model"); its
provider is found or created from (requester, base_url, sorted api_keys) as the
server does for an inline provider. A pipeline's `model` is a seeded model's
name or uuid, or any other uuid (a dangling reference); its config is the full
default pipeline config (`data/langbot_pipeline_config.json`, what a real
4.11.2 server accepts) with the LocalAgent runner on that model.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from convai_sync.errors import ConvaiSyncError

RUNNER_ID = "plugin:langbot-team/LocalAgent/default"
DEFAULT_REQUESTER = "openai-chat-completions"
_CONFIG_PATH = Path(__file__).resolve().parent.parent.parent / "data" / "langbot_pipeline_config.json"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_TOP_KEYS = {"models", "pipelines"}
_MODEL_KEYS = {"name", "requester", "base_url", "api_keys", "abilities", "extra_args",
               "context_length", "uuid"}
_PIPELINE_KEYS = {"name", "uuid", "model", "prompt", "description"}


def default_pipeline_config() -> dict:
    """A fresh copy of the full pipeline config (trigger, safety, ai, output)."""
    return json.loads(_CONFIG_PATH.read_text("utf-8"))


def pipeline_config(model_uuid: str, prompt: str | None = None) -> dict:
    """The full config with the LocalAgent runner using `model_uuid`."""
    config = default_pipeline_config()
    ai = config.setdefault("ai", {})
    ai["runner"] = {**(ai.get("runner") or {}), "id": RUNNER_ID}
    ai["runner"].setdefault("expire-time", 0)
    runners = ai.setdefault("runner_config", {})
    local = copy.deepcopy(runners.get(RUNNER_ID) or {})
    local["model"] = {**(local.get("model") or {}), "primary": model_uuid}
    local["model"].setdefault("fallbacks", [])
    local["model"].setdefault("reasoning", {})
    if prompt is not None:
        local["prompt"] = [{"role": "system", "content": prompt}]
    local.setdefault("prompt", [])
    local.setdefault("knowledge-bases", [])
    runners[RUNNER_ID] = local
    return config


def normalize_seed(seed: Any, where: str = "seed") -> dict:
    """Check a seed; the result has every optional field filled in."""
    if not isinstance(seed, dict):
        raise ConvaiSyncError(f"{where}: expected a mapping with 'models' and 'pipelines'")
    unknown = set(seed) - _TOP_KEYS
    if unknown:
        raise ConvaiSyncError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    models = [_model(m, f"{where}: models[{i}]") for i, m in enumerate(_list(seed, "models", where))]
    pipelines = [_pipeline(p, f"{where}: pipelines[{i}]")
                 for i, p in enumerate(_list(seed, "pipelines", where))]
    return {"models": models, "pipelines": pipelines}


def resolve_model_ref(ref: str, models: list[dict], where: str) -> str:
    """The uuid a pipeline's `model` names: a seeded model (by uuid, then by a
    unique name) or, for a uuid nobody has, that dangling uuid."""
    for m in models:
        if m["uuid"] == ref:
            return ref
    named = [m for m in models if m["name"] == ref]
    if len(named) == 1:
        return named[0]["uuid"]
    if len(named) > 1:
        raise ConvaiSyncError(f"{where}: model {ref!r} is ambiguous ({len(named)} models have that name)")
    if _UUID.match(ref):
        return ref
    raise ConvaiSyncError(f"{where}: model {ref!r} is neither a seeded model nor a uuid")


def _list(seed: dict, key: str, where: str) -> list:
    value = seed.get(key, [])
    if not isinstance(value, list):
        raise ConvaiSyncError(f"{where}: '{key}' must be a list")
    return value


def _check(entry: Any, allowed: set[str], required: tuple[str, ...], where: str) -> dict:
    if not isinstance(entry, dict):
        raise ConvaiSyncError(f"{where}: expected a mapping")
    unknown = set(entry) - allowed
    if unknown:
        raise ConvaiSyncError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in required:
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConvaiSyncError(f"{where}: '{key}' must be a non-empty string")
    if "uuid" in entry and not (isinstance(entry["uuid"], str) and entry["uuid"]):
        raise ConvaiSyncError(f"{where}: 'uuid' must be a non-empty string")
    return entry


def _model(entry: Any, where: str) -> dict:
    m = _check(entry, _MODEL_KEYS, ("name", "base_url"), where)
    keys = m.get("api_keys", [])
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConvaiSyncError(f"{where}: 'api_keys' must be a list of strings")
    if not isinstance(m.get("extra_args", {}), dict):
        raise ConvaiSyncError(f"{where}: 'extra_args' must be a mapping")
    if not isinstance(m.get("abilities", []), list):
        raise ConvaiSyncError(f"{where}: 'abilities' must be a list")
    return {"name": m["name"], "requester": m.get("requester", DEFAULT_REQUESTER),
            "base_url": m["base_url"], "api_keys": list(keys),
            "abilities": list(m.get("abilities", [])), "extra_args": dict(m.get("extra_args", {})),
            "context_length": m.get("context_length"), "uuid": m.get("uuid")}


def _pipeline(entry: Any, where: str) -> dict:
    p = _check(entry, _PIPELINE_KEYS, ("name", "model"), where)
    for key in ("prompt", "description"):
        if key in p and not isinstance(p[key], str):
            raise ConvaiSyncError(f"{where}: '{key}' must be a string")
    return {"name": p["name"], "model": p["model"], "uuid": p.get("uuid"),
            "prompt": p.get("prompt"), "description": p.get("description", "")}


def langbot_demo_seed() -> dict:
    """A small hand-managed LangBot workspace, drifted from what a manifest wants:
    three models (two on the same self-hosted host with different keys, so two
    providers) and four pipelines, one of them on `legacy-mixtral`, the model a
    manifest would drop. The api_keys are fake placeholders."""
    gateway, vllm = "https://llm-gateway.example-studio.com/v1", "https://vllm.example-studio.com/v1"
    turbo, llama, mixtral = ("9b7c1f52-3d4e-4a6b-8c9d-0e1f2a3b4c01", "9b7c1f52-3d4e-4a6b-8c9d-0e1f2a3b4c02",
                             "9b7c1f52-3d4e-4a6b-8c9d-0e1f2a3b4c03")
    return normalize_seed({
        "models": [
            {"uuid": turbo, "name": "gpt-4o-mini", "base_url": gateway, "api_keys": ["sk-demo-live-1"],
             "abilities": ["func_call"], "extra_args": {"temperature": 0.4}, "context_length": 128000},
            {"uuid": llama, "name": "meta-llama/Llama-3.1-70B-Instruct", "base_url": vllm,
             "api_keys": ["sk-demo-live-2"], "extra_args": {"temperature": 0.5}},
            {"uuid": mixtral, "name": "mistralai/Mixtral-8x7B-Instruct-v0.1", "base_url": vllm,
             "api_keys": ["sk-demo-live-3"], "extra_args": {"temperature": 0.8}},
        ],
        "pipelines": [
            {"uuid": "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11", "name": "Captain Mara", "model": turbo,
             "prompt": "You are Captain Mara, a starship captain."},
            {"uuid": "8b1d4e7a-2c3f-4e9b-8d6a-7f0e1c2b3a45", "name": "Archivist Oren", "model": llama,
             "prompt": "You are Oren, keeper of the archive."},
            {"uuid": "c9e2a5d8-4b6f-4a1c-9e3d-2f7b8a6c5d90", "name": "Trickster Pell", "model": mixtral,
             "prompt": "You are Pell, a riddling trickster."},
            {"uuid": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "name": "Guide Ila", "model": turbo,
             "prompt": "You are Ila, a patient guide."},
        ],
    }, "langbot_demo_seed")
