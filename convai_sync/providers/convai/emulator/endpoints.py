"""The Convai endpoints as CONVAI_API.md describes them: routing per dialect,
request validation, and the two error envelopes (models vs characters).

Everything here runs under the emulator's state lock, so it must not block.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convai_sync.emulator.base import Reply
from convai_sync.providers.convai.emulator.seed import is_temperature
from convai_sync.providers.convai.emulator.state import OPENAI_BASE_URL, AccountState

MODEL, CHARACTER = "model", "character"  # the two error-envelope families


Op = Callable[[AccountState, dict], Reply]


@dataclass(frozen=True)
class Route:
    family: str
    op: Op
    writes: bool


def tid() -> str:
    return str(uuid.uuid4())


def error(family: str, status: int, message: str) -> Reply:
    """An error in the envelope of the endpoint's family."""
    if family == CHARACTER:
        if status == 401:
            return Reply(401, {"API_ERROR": "Invalid API key provided."})
        return Reply(status, {"ERROR": message})
    return Reply(status, {"status": "error", "message": message, "transactionID": tid()})


def handle(state: AccountState, route: Route | None, path: str, method: str, key_ok: bool,
           body: Any, body_error: str | None) -> Reply:
    """Check route, method, key and body in the server's order, then run the endpoint."""
    if route is None:
        return error(MODEL, 404, f"Not found: {path}")
    if method != "POST":
        reply = error(route.family, 405, f"Method {method} not allowed; use POST")
        reply.headers["Allow"] = "POST"
        return reply
    if not key_ok:
        return error(route.family, 401, "Unauthorized: missing or invalid CONVAI-API-KEY")
    if body_error:
        return error(route.family, 400, body_error)
    return route.op(state, body)


# --- request validation -------------------------------------------------------------

def _invalid(body: dict, required: dict[str, type], optional: dict[str, type]) -> str | None:
    """The first problem with the typed fields of `body`; other keys are ignored."""
    missing = [k for k in required if body.get(k) is None]
    if missing:
        return f"Missing required field(s): {', '.join(missing)}"
    for name, kind in {**required, **optional}.items():
        if name not in body:
            continue
        value = body[name]
        if kind is bool and not isinstance(value, bool):
            return f"'{name}' must be a boolean"
        if kind is str and not (isinstance(value, str) and value):
            return f"'{name}' must be a non-empty string"
    return None


def _ok(message: str, **extra: Any) -> dict:
    return {"status": "success", **extra, "message": message, "transactionID": tid()}


# --- custom models: llm-models dialect ------------------------------------------------

_LLM_UPDATABLE = {"display_name": str, "base_url": str, "api_key": str, "is_uncensored": bool}
_CUSTOM_UPDATABLE = {"model_name": str, "api_key": str, "base_url": str, "is_uncensored": bool}


def llm_register(state: AccountState, body: dict) -> Reply:
    problem = _invalid(body, {"model_group_name": str, "model_name": str, "api_key": str,
                              "is_uncensored": bool},
                       {"display_name": str, "base_url": str})
    if problem:
        return error(MODEL, 400, problem)
    name = body["model_group_name"]
    # undocumented: what an unnamed model shows (Quirks.unnamed_display); only a
    # display_name the request gives is checked for uniqueness
    display = body.get("display_name", state.unnamed_display(name, body["model_name"]))
    refusal = _register_refusal(state, name)
    if refusal:
        return refusal
    if "display_name" in body and state.display_owner(display) is not None:
        return error(MODEL, 409, "display_name already exists")
    record = state.register(model_group_name=name, model_name=body["model_name"],
                            display_name=display, base_url=body.get("base_url", OPENAI_BASE_URL),
                            is_uncensored=body["is_uncensored"], api_key=body["api_key"])
    return Reply(200, _ok(f"Model '{name}' registered successfully", model_group_name=name,
                          model_name=record["model_name"], display_name=display), committed=True)


def llm_update(state: AccountState, body: dict) -> Reply:
    return _update(state, body, _LLM_UPDATABLE)


def llm_list(state: AccountState, body: dict) -> Reply:
    keys = ("model_group_name", "model_name", "display_name", "base_url", "is_uncensored")
    models = [{**{k: m[k] for k in keys}, "category": "Private", "created_at": m["created_at"]}
              for m in state.models.values()]  # api_key is write-only
    return Reply(200, {"status": "success", "models": models, "count": len(models),
                       "transactionID": tid()})


def deregister(state: AccountState, body: dict) -> Reply:
    problem = _invalid(body, {"model_group_name": str}, {})
    if problem:
        return error(MODEL, 400, problem)
    name = body["model_group_name"]
    if name not in state.models:
        return error(MODEL, 404, f"Model '{name}' not found")
    # Documented: succeeds even while characters use it; they stop working.
    del state.models[name]
    return Reply(200, _ok(f"Model '{name}' deregistered successfully"), committed=True)


# --- custom models: custom-llm dialect (third-party OpenAPI file) ----------------------

def custom_register(state: AccountState, body: dict) -> Reply:
    problem = _invalid(body, {"model_group_name": str, "model_name": str, "api_key": str,
                              "base_url": str}, {"is_uncensored": bool})
    if problem:
        return error(MODEL, 400, problem)
    name = body["model_group_name"]
    refusal = _register_refusal(state, name)
    if refusal:
        return refusal
    # display_name is not part of this dialect: ignored, the model shows its code.
    state.register(model_group_name=name, model_name=body["model_name"], display_name=name,
                   base_url=body["base_url"], is_uncensored=body.get("is_uncensored", False),
                   api_key=body["api_key"])
    return Reply(200, _ok(f"Model '{name}' registered successfully", model_group_name=name,
                          model_name=body["model_name"]), committed=True)


def custom_update(state: AccountState, body: dict) -> Reply:
    return _update(state, body, _CUSTOM_UPDATABLE)


def custom_list(state: AccountState, body: dict) -> Reply:
    return Reply(200, [{k: m[k] for k in ("model_group_name", "model_name", "base_url")}
                       for m in state.models.values()])


def _register_refusal(state: AccountState, name: str) -> Reply | None:
    if name in state.builtins:
        return error(MODEL, 400, f"model_group_name '{name}' is a built-in model code")
    if name in state.models:
        return error(MODEL, 409, "model_group_name already exists")
    return None


def _update(state: AccountState, body: dict, updatable: dict[str, type]) -> Reply:
    problem = _invalid(body, {"model_group_name": str}, updatable)
    if problem:
        return error(MODEL, 400, problem)
    fields = [k for k in body if k in updatable]  # anything else is silently ignored
    if not fields:
        return error(MODEL, 400, "No valid fields to update")
    name = body["model_group_name"]
    model = state.models.get(name)
    if model is None:
        return error(MODEL, 404, f"Model '{name}' not found")
    if "display_name" in fields and state.display_owner(body["display_name"]) not in (None, name):
        return error(MODEL, 409, "display_name already exists")
    for key in fields:
        model[key] = body[key]
    return Reply(200, _ok(f"Model '{name}' updated successfully", updated_fields=fields),
                 committed=True)


# --- characters (both dialects) --------------------------------------------------------

def _character_view(char: dict, with_config: bool) -> dict:
    view = {
        "character_id": char["character_id"],
        "character_name": char["character_name"],
        "user_id": "emulator-user",
        "voice_type": "MALE",
        "timestamp": char["timestamp"],
        "backstory": f"{char['character_name']} lives on an emulated Convai account.",
    }
    if with_config:
        view["personalised_prompt_config"] = {"MODEL": char["model_group_name"], "PROMPT": "",
                                              "VERBOSITY": 2, "TEMPERATURE": char["temperature"]}
    return view


def _find_character(state: AccountState, body: dict) -> tuple[dict | None, Reply | None]:
    char_id = body.get("charID")
    if not isinstance(char_id, str) or not char_id:
        return None, error(CHARACTER, 400, "charID is required")
    char = state.characters.get(char_id)
    if char is None:
        return None, Reply(400, {"ERROR": f"Could not fetch character details for {char_id}",
                                 "Reference ID": tid()})
    return char, None


def character_list(state: AccountState, body: dict) -> Reply:
    return Reply(200, {"characters": [_character_view(c, state.list_carries_config)
                                      for c in state.characters.values()]})


def character_get(state: AccountState, body: dict) -> Reply:
    char, refusal = _find_character(state, body)
    return refusal or Reply(200, _character_view(char, state.get_carries_config))


def character_update(state: AccountState, body: dict) -> Reply:
    char, refusal = _find_character(state, body)
    if refusal:
        return refusal
    if "model_group_name" not in body and "temperature" not in body:
        return error(CHARACTER, 400, "Nothing to update: give model_group_name and/or temperature")
    if "temperature" in body and not is_temperature(body["temperature"]):
        return error(CHARACTER, 400, "temperature must be a number between 0 and 1")
    if "model_group_name" in body:
        model = body["model_group_name"]
        if not isinstance(model, str) or not state.is_usable(model):
            return error(CHARACTER, 400, f"Model '{model}' is not available")
        char["model_group_name"] = model
    if "temperature" in body:
        char["temperature"] = body["temperature"]
    return Reply(200, {"STATUS": "SUCCESS"}, committed=True)


def supported_models(state: AccountState, body: dict) -> Reply:
    reasoning = {"levels": [], "supports_auto": False, "default": None}
    entries = sorted(state.builtins.items())
    entries += [(name, m["display_name"]) for name, m in state.models.items()]
    return Reply(200, {"models": [{"model_group_name": code, "display_name": display,
                                   "reasoning": dict(reasoning)} for code, display in entries]})


# --- routing ----------------------------------------------------------------------------

_MODEL_OPS: dict[str, dict[str, Op]] = {
    "llm-models": {"register": llm_register, "update": llm_update,
                   "deregister": deregister, "list": llm_list},
    "custom-llm": {"register": custom_register, "update": custom_update,
                   "deregister": deregister, "list": custom_list},
}
_CHARACTER_OPS: dict[str, Op] = {"list": character_list, "get": character_get,
                                 "update": character_update, "getSupportedModel": supported_models}
_READS = {"list", "get", "getSupportedModel"}


def route(dialect: str, path: str) -> Route | None:
    """The endpoint at `path`; the other dialect's paths do not exist."""
    prefix, _, name = path.lstrip("/").partition("/")
    if prefix == dialect:
        op = _MODEL_OPS[dialect].get(name)
        family = MODEL
    elif prefix == "character":
        op = _CHARACTER_OPS.get(name)
        family = CHARACTER
    else:
        return None
    if op is None or not path.startswith("/") or path.startswith("//"):
        return None
    return Route(family, op, writes=name not in _READS)
