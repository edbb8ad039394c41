"""An OpenAI-compatible model endpoint on loopback, for trying and testing
endpoint checks: GET {prefix}/models and POST {prefix}/chat/completions under
any path prefix, each endpoint (prefix) or model in one of these modes:

    ok             answers (the default)
    slow           answers after `slow_ms`
    down           HTTP 500 on every call
    wrong-key      HTTP 401 whatever key is sent
    unknown-model  HTTP 404 model_not_found for the model

A mode comes from `modes` (keyed by path prefix, e.g. "/slow/v1", or by model
name), else from a mode word in the prefix or the model name: so under
`--emulator`, where https://slow.example.com/v1 is served as
{stub}/slow.example.com/v1, that endpoint is slow. A closed port is the other
way to be down: stop the stub, or point at a port nothing listens on.
"""
from __future__ import annotations

import json
import re
import time
from email.message import Message
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from convai_sync.emulator.base import AppEmulator, Reply, Request
from convai_sync.emulator.faults import FAULT_MESSAGES, Faults
from convai_sync.emulator.server import Response

MODES = ("ok", "slow", "down", "wrong-key", "unknown-model")
_MODE_WORD = re.compile(r"(?<![\w-])(slow|down|wrong-key|unknown-model)(?![\w-])")
_ROUTES = ("/chat/completions", "/models")


class OpenAIStub(AppEmulator):
    thread_name = "openai-stub"

    def __init__(self, models: Iterable[str] | None = None, keys: Iterable[str] | None = None,
                 modes: Mapping[str, str] | None = None, slow_ms: float = 2500.0,
                 faults: Faults | None = None):
        """`models`: the model names served (None: any); `keys`: the keys accepted
        (None: any non-empty key); `modes`: path prefix or model name -> mode."""
        super().__init__(faults)
        self.models = None if models is None else frozenset(models)
        self.keys = None if keys is None else frozenset(keys)
        self.modes = dict(modes or {})
        bad = set(self.modes.values()) - set(MODES)
        if bad:
            raise ValueError(f"unknown stub mode(s) {sorted(bad)}; choose from {', '.join(MODES)}")
        self.slow_ms = slow_ms

    def route(self, url: str) -> str:
        """Where this stub serves `url`: https://host/v1 -> {stub}/host/v1."""
        parts = urlsplit(url)
        return f"{self.url}/{parts.netloc}{parts.path}".rstrip("/")

    # -- modes ----------------------------------------------------------------------

    def mode(self, path: str, model: str | None = None) -> str:
        prefix = _prefix(path)
        for name in (prefix, model):
            if name is None:
                continue
            found = self.modes.get(name)
            if found is None:
                word = _MODE_WORD.search(name)
                found = word.group(1) if word else None
            if found and found != "ok":
                return found
        return "ok"

    # -- the request pipeline -------------------------------------------------------

    def serve(self, method: str, target: str, headers: Message, raw: bytes) -> Response | None:
        if self.mode(urlsplit(target).path, _model_of(raw)) == "slow":
            time.sleep(self.slow_ms / 1000)  # outside the lock: slow endpoints overlap
        return super().serve(method, target, headers, raw)

    def handle(self, request: Request) -> Reply:
        route = next((r for r in _ROUTES if request.path.endswith(r)), None)
        if route is None:
            return _error(404, f"no route {request.method} {request.path}", "not_found")
        model = request.body.get("model") if isinstance(request.body, dict) else None
        mode = self.mode(request.path, model if route == "/chat/completions" else None)
        if mode == "down":
            return _error(500, "The server had an error while processing your request.", None)
        if mode == "wrong-key" or not self._key_ok(request.headers):
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if route == "/models":
            data = [{"id": m, "object": "model", "owned_by": "stub"} for m in sorted(self.models or ())]
            return Reply(200, {"object": "list", "data": data})
        return self._chat(request, str(model), mode)

    def _key_ok(self, headers: Message) -> bool:
        scheme, _, key = (headers.get("Authorization") or "").partition(" ")
        return scheme == "Bearer" and bool(key) and (self.keys is None or key in self.keys)

    def _chat(self, request: Request, model: str, mode: str) -> Reply:
        if request.method != "POST" or request.body_error:
            return _error(400, request.body_error or "use POST", "invalid_request")
        if mode == "unknown-model" or (self.models is not None and model not in self.models):
            return _error(404, f"The model `{model}` does not exist or you do not have access "
                          "to it.", "model_not_found")
        return Reply(200, {"id": "chatcmpl-stub", "object": "chat.completion", "model": model,
                           "choices": [{"index": 0, "finish_reason": "length",
                                        "message": {"role": "assistant", "content": "pong"}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def fault_reply(self, request: Request, status: int) -> Reply:
        return _error(status, FAULT_MESSAGES.get(status, "injected fault"), None)


def _prefix(path: str) -> str:
    for route in _ROUTES:
        if path.endswith(route):
            return path[: -len(route)]
    return path


def _model_of(raw: bytes) -> str | None:
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    return str(body.get("model")) if isinstance(body, dict) and "model" in body else None


def _error(status: int, message: str, code: str | None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "invalid_request_error",
                                    "param": None, "code": code}})
