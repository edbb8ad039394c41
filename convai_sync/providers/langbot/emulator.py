"""A LangBot 4.11.2 emulator: LLM models, model providers and pipelines, as
/work/shared/LANGBOT_API.md and tests/test_langbot_contract.py (run against the
real server too) describe them, on the shared emulator base (lifecycle, faults,
request log, orphan recording).

What it reproduces, quirks included: the `{"code","msg","data"}` envelope and
both 401 bodies; providers found or created from an inline `provider` by
(requester, base_url, sorted api_keys) and never cleaned up; secrets in clear
unless `include_secret=false`; model PUT as a top-level merge (nested objects
replaced whole); unknown or read-only keys as 500s; a non-string model `name`
accepted, after which every read of that model (and the list) is a 500 until it
is deleted; pipeline writes that commit and then fail to load (500, or 400 for
an unknown long-text strategy); no reference check when a model is deleted.

Simplified: every LLM requester is tested as an OpenAI-style POST to
{base_url}/chat/completions; reasoning capabilities come from the `reasoning`
ability alone (the server also asks litellm about the model name); model and
provider lists come back in insertion order (the server has no ORDER BY, so its
order varies); unknown routes are JSON 404/405 where the server sends HTML.

    with LangBotEmulator(seed=langbot_demo_seed()) as lb:
        httpx.get(f"{lb.url}/api/v1/pipelines", headers={"X-API-Key": "emulator-key"})
        assert lb.orphan_events == []
"""
from __future__ import annotations

import copy
import hmac
import re
import uuid as uuidlib
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from convai_sync.emulator.base import AppEmulator, OrphanCheck, Reply, Request
from convai_sync.emulator.faults import FAULT_MESSAGES, Faults, retry_after_header
from convai_sync.providers.langbot.emulator_seed import (
    default_pipeline_config, langbot_demo_seed, normalize_seed, pipeline_config, resolve_model_ref)

__all__ = ["BUILTIN_PROVIDER_UUID", "LangBotEmulator", "langbot_demo_seed"]

VERSION = "v4.11.2"
BUILTIN_PROVIDER_UUID = "00000000-0000-0000-0000-000000000000"
TEST_PROMPT = 'Hello, world! Please just reply a "Hello".'
UPSTREAM_TIMEOUT = 2.0

# Requester names of 4.11.2 (pkg/provider/modelmgr/requesters/*.yaml); those
# without "llm" in their support_type refuse LLM models with a 400.
NON_LLM_REQUESTERS = frozenset({"chroma-embedding", "cohere-rerank", "jina-rerank",
                                "seekdb-embedding", "voyageai-rerank"})
REQUESTERS = NON_LLM_REQUESTERS | frozenset({
    "302-ai-chat-completions", "anthropic-messages", "baidu-chat-completions",
    "bailian-chat-completions", "openai-chat-completions", "openai-codex",
    "compshare-chat-completions", "deepseek-chat-completions", "doubao-chat-completions",
    "gemini-chat-completions", "gitee-ai-chat-completions", "groq-chat-completions",
    "iflytek-chat-completions", "jiekouai-chat-completions", "litellm-chat",
    "lmstudio-chat-completions", "mimo-chat-completions", "minimax-chat-completions",
    "mistral-chat-completions", "modelscope-chat-completions", "moonshot-chat-completions",
    "moonshot-cn-chat-completions", "new-api-chat-completions", "ollama-chat",
    "openrouter-chat-completions", "ppio-chat-completions", "qhaigc-chat-completions",
    "qiniu-chat-completions", "shengsuanyun-chat-completions", "siliconflow-chat-completions",
    "space-chat-completions", "tencent-chat-completions", "together-chat-completions",
    "tokenlab-chat-completions", "tokenpony-chat-completions", "volcark-chat-completions",
    "xai-chat-completions", "yi-chat-completions", "zhipuai-chat-completions"})

MODEL_COLUMNS = frozenset({"uuid", "workspace_uuid", "name", "provider_uuid", "abilities",
                           "context_length", "reasoning_config", "extra_args", "prefered_ranking",
                           "created_at", "updated_at"})
PROVIDER_COLUMNS = frozenset({"uuid", "workspace_uuid", "name", "requester", "base_url", "api_keys",
                              "created_at", "updated_at"})
PIPELINE_COLUMNS = frozenset({"uuid", "workspace_uuid", "name", "description", "emoji", "created_at",
                              "updated_at", "for_version", "is_default", "stages", "config",
                              "extensions_preferences"})
JSON_COLUMNS = frozenset({"abilities", "reasoning_config", "extra_args", "api_keys", "stages", "config",
                          "extensions_preferences"})
DEFAULT_STAGES = ("GroupRespondRuleCheckStage", "BanSessionCheckStage", "PreContentFilterStage",
                  "PreProcessor", "RequireRateLimitOccupancy", "MessageProcessor",
                  "ReleaseRateLimitOccupancy", "PostContentFilterStage", "ResponseWrapper",
                  "LongTextProcessStage", "SendResponseBackStage")
DEFAULT_EXTENSIONS = {"enable_all_plugins": True, "enable_all_mcp_servers": True, "plugins": [],
                      "mcp_servers": [], "mcp_resources": [], "mcp_resource_agent_read_enabled": True}
REASONING_LEVELS = ("provider_default", "disabled", "enabled", "minimal", "low", "medium", "high",
                    "xhigh", "max")
DECLARED_LEVELS = ("provider_default", "low", "medium", "high")  # a model with the "reasoning" ability
_REASONING_CONFLICTS = ("enable_thinking", "reasoning", "reasoning_effort", "thinking", "thinking_budget")
_PROTECTED_PIPELINE = ("uuid", "workspace_uuid", "for_version", "stages", "is_default")
_TEST_ERRORS = {400: "Invalid request parameters", 401: "Invalid API key", 404: "Invalid model or endpoint",
                422: "Invalid request parameters", 429: "Rate limit exceeded or insufficient balance"}


class _Fail(Exception):
    """An error reply; raised anywhere in a handler."""

    def __init__(self, status: int, code: int | str, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _bad(msg: str) -> _Fail:
    return _Fail(400, -1, msg)  # a ValueError the route turns into http_status(400, -1, ...)


def _not_found() -> _Fail:
    return _Fail(404, "resource_not_found", "Resource not found")  # WorkspaceNotFoundError


def _internal() -> _Fail:
    return _Fail(500, "internal_error", "Internal server error")  # any other exception


def _now() -> str:
    """SQLite CURRENT_TIMESTAMP as the server serializes it: naive UTC, seconds."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat()


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


# --- secrets (pkg/api/http/service/secrets.py) ------------------------------------------

SECRET_MASK = "***"
_MISSING = object()
_SENSITIVE_NAMES = frozenset({"api_key", "api_keys", "apikey", "apikeys", "auth", "authorization", "cookie",
                              "credentials", "database_url", "dsn", "header_value", "key",
                              "proxy_authorization", "set_cookie", "webhook_url"})
_SENSITIVE_TOKENS = frozenset({"apikey", "credential", "credentials", "passwd", "password", "secret", "token"})
_KEY_QUALIFIERS = frozenset({"access", "api", "auth", "bearer", "client", "debug", "encryption", "private",
                             "signing"})


def _normalize_key(key: object) -> str:
    value = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key or ""))
    return re.sub(r"[^a-zA-Z0-9]+", "_", value).strip("_").lower()


def is_sensitive_key(key: object) -> bool:
    normalized = _normalize_key(key)
    tokens = frozenset(t for t in normalized.split("_") if t)
    return (normalized in _SENSITIVE_NAMES or bool(tokens & _SENSITIVE_TOKENS)
            or bool(tokens & {"key", "keys"}) and bool(tokens & _KEY_QUALIFIERS))


def _is_url_key(key: object) -> bool:
    normalized = _normalize_key(key)
    return normalized == "url" or normalized.endswith("_url")


def mask_secret_value(value: Any) -> Any:
    """Every non-empty leaf masked, the shape kept (["a","b"] -> ["***","***"])."""
    if isinstance(value, dict):
        return {k: mask_secret_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secret_value(v) for v in value]
    return value if value is None or value == "" else SECRET_MASK


def _redact_url(value: Any) -> Any:
    if isinstance(value, list):
        return [_redact_url(v) for v in value]
    if not isinstance(value, str) or not value:
        return copy.deepcopy(value)
    try:
        parts = urlsplit(value)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{SECRET_MASK}@{netloc.rsplit('@', 1)[1]}"
        query = urlencode([(k, SECRET_MASK if is_sensitive_key(k) and v else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return SECRET_MASK


def redact_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: mask_secret_value(v) if is_sensitive_key(k) else _redact_url(v) if _is_url_key(k)
                else redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return copy.deepcopy(value)


def restore_secrets(value: Any, current: Any = _MISSING, sensitive: bool = False) -> Any:
    """Masked leaves of a write taken from the stored value; a mask with nothing
    stored behind it is a 400."""
    if sensitive and value == SECRET_MASK:
        if current is _MISSING:
            raise _bad("Masked secret has no existing value")
        return copy.deepcopy(current)
    if isinstance(value, dict):
        cur = current if isinstance(current, dict) else {}
        return {k: restore_secrets(v, cur.get(k, _MISSING), sensitive or is_sensitive_key(k))
                for k, v in value.items()}
    if isinstance(value, list):
        cur = current if isinstance(current, (list, tuple)) else ()
        return [restore_secrets(v, cur[i] if i < len(cur) else _MISSING, sensitive)
                for i, v in enumerate(value)]
    return copy.deepcopy(value)


def normalize_api_keys(keys: Any) -> list[str]:
    """Stripped, de-duplicated, non-empty; a string is one key."""
    if keys is None:
        return []
    try:
        raw = [keys] if isinstance(keys, str) else list(keys)
    except TypeError:
        raise _internal() from None
    out: list[str] = []
    for key in raw:
        key = key.strip() if isinstance(key, str) else ""
        if key and key not in out:
            out.append(key)
    return out


# --- validation shared by the routes ----------------------------------------------------

def _check_row(data: dict, columns: frozenset[str], not_null: tuple[str, ...]) -> None:
    """What the INSERT/UPDATE itself refuses (500): unknown columns, a timestamp sent
    as a string, NULL in a NOT NULL column, a list or object in a scalar column."""
    if set(data) - columns or "created_at" in data or "updated_at" in data:
        raise _internal()
    if any(k in data and data[k] is None for k in not_null):
        raise _internal()
    if any(isinstance(v, (dict, list)) for k, v in data.items() if k not in JSON_COLUMNS):
        raise _internal()


def _reasoning_config(value: Any, abilities: Any, extra_args: Any) -> dict:
    """model_reasoning.validate_reasoning_config, then the requester's level check."""
    if value is None:
        return {"level": "provider_default"}
    if not isinstance(value, dict):
        raise _bad("reasoning_config must be an object")
    unknown = set(value) - {"level", "budget_tokens"}
    if unknown:
        raise _bad(f"Unsupported reasoning_config fields: {', '.join(sorted(unknown))}")
    budget = value.get("budget_tokens")
    level = value.get("level", "enabled" if budget is not None else "provider_default")
    if level not in REASONING_LEVELS:
        raise _bad(f"Unsupported reasoning level: {level}")
    if budget is not None:
        raise _bad("Unsupported reasoning token budget")  # no emulated requester takes a budget
    if level == "provider_default":
        return {"level": level}
    if not _declares_reasoning(abilities):
        raise _bad("The reasoning ability must be enabled before selecting a reasoning level")
    conflicts = [k for k in _REASONING_CONFLICTS if isinstance(extra_args, dict) and k in extra_args]
    if conflicts:
        raise _bad("reasoning_config conflicts with advanced parameters: " + ", ".join(conflicts))
    return {"level": level}


def _declares_reasoning(abilities: Any) -> bool:
    try:
        return "reasoning" in (abilities or [])  # a string is searched, as the server does
    except TypeError:
        raise _internal() from None


def _reasoning_capabilities(abilities: Any) -> dict:
    if _declares_reasoning(abilities):
        return {"levels": list(DECLARED_LEVELS), "source": "manual", "supported": True}
    return {"levels": ["provider_default"], "source": "unknown", "supported": False}


def _check_level(data: dict) -> None:
    level = data["reasoning_config"]["level"]
    if level != "provider_default" and level not in DECLARED_LEVELS:
        raise _bad(f'Reasoning level "{level}" is not supported by model {data.get("name")}. '
                   f'Available levels: {", ".join(DECLARED_LEVELS)}')


def validate_pipeline_config(config: Any) -> None:
    """RunnerConfigResolver.validate_pipeline_config: structure only, 400s."""
    if not isinstance(config, dict):
        raise _bad("Pipeline config must be an object")
    ai = config.get("ai")
    if ai is None:
        return
    if not isinstance(ai, dict):
        raise _bad("Pipeline config field 'ai' must be an object")
    runner = ai.get("runner")
    if runner is None:
        return
    if not isinstance(runner, dict):
        raise _bad("Pipeline config field 'ai.runner' must be an object")
    runner_id = runner.get("id")
    if not isinstance(runner_id, str):
        raise _bad("Pipeline config field 'ai.runner.id' must be a string")
    if not runner_id:
        return
    runners = ai.get("runner_config")
    if not isinstance(runners, dict):
        raise _bad("Pipeline config field 'ai.runner_config' must be an object")
    if runner_id not in runners:
        raise _bad(f"Pipeline runner_config is missing selected runner {runner_id!r}")
    if not isinstance(runners[runner_id], dict):
        raise _bad(f"Pipeline runner_config[{runner_id!r}] must be an object")


def load_failure(config: Any) -> _Fail | None:
    """Why loading the stored pipeline fails after the write committed: the stages'
    initialize() reads safety.content-filter and output.long-text-processing."""
    try:
        config["safety"]["content-filter"]["check-sensitive-words"]
        long_text = config["output"]["long-text-processing"]
        strategy = long_text["strategy"]
        if strategy == "image":
            long_text["font-path"]  # a missing font falls back to "forward"
        elif strategy not in ("none", "forward"):
            return _bad(f"Long message processing strategy not found: {strategy}")
    except (KeyError, TypeError, IndexError):
        return _internal()
    return None


def model_refs(config: Any) -> list[str]:
    """The model uuids a pipeline's selected runner uses: model.primary and fallbacks."""
    ai = config.get("ai") if isinstance(config, dict) else None
    runner = ai.get("runner") if isinstance(ai, dict) else None
    runners = ai.get("runner_config") if isinstance(ai, dict) else None
    if not isinstance(runner, dict) or not isinstance(runners, dict):
        return []
    local = runners.get(runner.get("id")) if isinstance(runner.get("id"), str) else None
    model = local.get("model") if isinstance(local, dict) else None
    if isinstance(model, str):
        return [model] if model else []
    if not isinstance(model, dict):
        return []
    fallbacks = model.get("fallbacks") if isinstance(model.get("fallbacks"), list) else []
    return [m for m in [model.get("primary"), *fallbacks] if isinstance(m, str) and m]


def call_upstream(base_url: str, key: str, payload: dict) -> str | None:
    """POST {base_url}/chat/completions as the model test does; the failure text, or None."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx.Client(trust_env=False, timeout=UPSTREAM_TIMEOUT) as client:
            r = client.post(base_url.rstrip("/") + "/chat/completions", json=payload, headers=headers)
    except httpx.TimeoutException:
        return "Request timed out"
    except (httpx.HTTPError, ValueError):
        return "Unknown error"  # what 4.11.2 says for a refused connection
    if 200 <= r.status_code < 300:
        return None
    return _TEST_ERRORS.get(r.status_code, "API error")


def _first_arg(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


Handler = Callable[..., Any]
_UUID_SEG = r"([^/]+)"


class LangBotEmulator(AppEmulator):
    thread_name = "langbot-emulator"

    def __init__(self, api_key: str = "emulator-key", seed: dict | None = None,
                 faults: Faults | None = None):
        super().__init__(faults)
        self.api_key = api_key
        self.workspace_uuid = _new_uuid()
        self._providers: dict[str, dict] = {}
        self._models: dict[str, dict] = {}
        self._pipelines: dict[str, dict] = {}
        self._wrote = False
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler], bool]] = [
            (re.compile(r"/api/v1/provider/models/llm"),
             {"GET": self._list_models, "POST": self._create_model}, True),
            (re.compile(rf"/api/v1/provider/models/llm/{_UUID_SEG}"),
             {"GET": self._get_model, "PUT": self._update_model, "DELETE": self._delete_model}, True),
            (re.compile(rf"/api/v1/provider/models/llm/{_UUID_SEG}/test"), {"POST": self._test_model}, True),
            (re.compile(r"/api/v1/provider/providers"),
             {"GET": self._list_providers, "POST": self._create_provider_route}, True),
            (re.compile(rf"/api/v1/provider/providers/{_UUID_SEG}"),
             {"GET": self._get_provider, "PUT": self._update_provider, "DELETE": self._delete_provider}, True),
            (re.compile(r"/api/v1/pipelines"), {"GET": self._list_pipelines, "POST": self._create_pipeline}, True),
            (re.compile(rf"/api/v1/pipelines/{_UUID_SEG}"),
             {"GET": self._get_pipeline, "PUT": self._update_pipeline, "DELETE": self._delete_pipeline}, True),
            (re.compile(r"/api/v1/system/info"), {"GET": self._system_info}, False),
        ]
        self.load_seed(seed or {})

    # --- seed and snapshots -----------------------------------------------------------

    def load_seed(self, seed: dict) -> None:
        """Replace the whole workspace with `seed` (the request log is kept)."""
        seed = normalize_seed(seed)
        with self._lock:
            self._providers, self._models, self._pipelines = {}, {}, {}
            now = _now()
            self._providers[BUILTIN_PROVIDER_UUID] = {
                "uuid": BUILTIN_PROVIDER_UUID, "workspace_uuid": self.workspace_uuid, "name": "LangBot Models",
                "requester": "space-chat-completions", "base_url": "https://api.langbot.cloud/v1",
                "api_keys": [], "created_at": now, "updated_at": now}
            for m in seed["models"]:
                self._seed_model(m, now)
            models = list(self._models.values())
            for i, p in enumerate(seed["pipelines"]):
                target = resolve_model_ref(p["model"], models, f"seed: pipelines[{i}]")
                self._insert_pipeline({"uuid": p["uuid"] or _new_uuid(), "name": p["name"],
                                       "description": p["description"],
                                       "config": pipeline_config(target, p["prompt"])}, now)

    def _seed_model(self, m: dict, now: str) -> None:
        provider = self._find_or_create_provider(m["requester"], m["base_url"], m["api_keys"])
        uuid = m["uuid"] or _new_uuid()
        self._models[uuid] = {
            "uuid": uuid, "workspace_uuid": self.workspace_uuid, "name": m["name"], "provider_uuid": provider,
            "abilities": m["abilities"], "context_length": m["context_length"],
            "reasoning_config": {"level": "provider_default"}, "extra_args": m["extra_args"],
            "prefered_ranking": 0, "created_at": now, "updated_at": now}

    def models(self) -> dict[str, dict]:
        with self._lock:
            return copy.deepcopy(self._models)

    def providers(self) -> dict[str, dict]:
        with self._lock:
            return copy.deepcopy(self._providers)

    def pipelines(self) -> dict[str, dict]:
        with self._lock:
            return copy.deepcopy(self._pipelines)

    # --- platform hooks ---------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        self._wrote = False
        try:
            handler, args, needs_auth = self._route(request)
            if needs_auth:
                self._authenticate(request)
            data = handler(request, *args)
        except _Fail as fail:
            return self._error(fail, self._wrote)
        return Reply(200, {"code": 0, "msg": "ok", "data": data}, committed=self._wrote)

    def fault_reply(self, request: Request, status: int) -> Reply:
        if status == 500:
            return self._error(_internal(), False)
        if status == 429:
            reply = Reply(429, {"code": "task_capacity_exceeded", "msg": FAULT_MESSAGES[429]})
            reply.headers["Retry-After"] = retry_after_header(self._faults.retry_after)
            return reply
        return Reply(status, {"code": -1, "msg": FAULT_MESSAGES[status]})

    def watch(self, request: Request) -> OrphanCheck | None:
        """Pipelines left on a model uuid that existed before this write and is gone after."""
        if request.method not in ("POST", "PUT", "DELETE"):
            return None
        before = set(self._models)

        def new_orphans() -> dict[str, str]:
            removed = before.difference(self._models)
            if not removed:
                return {}
            out: dict[str, str] = {}
            for pipeline in self._pipelines.values():
                gone = [m for m in model_refs(pipeline["config"]) if m in removed]
                if gone:
                    out[pipeline["uuid"]] = gone[0]
            return out

        return new_orphans

    # --- request plumbing -------------------------------------------------------------

    def _route(self, request: Request) -> tuple[Handler, tuple[str, ...], bool]:
        for pattern, methods, needs_auth in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            method = "GET" if request.method == "HEAD" else request.method
            if method not in methods:
                raise _Fail(405, -1, "The method is not allowed for the requested URL.")
            return methods[method], match.groups(), needs_auth
        raise _Fail(404, -1, "The requested URL was not found on the server.")

    def _authenticate(self, request: Request) -> None:
        """X-API-Key first; else the Authorization header (with or without "Bearer ")."""
        api_key = request.headers.get("X-API-Key", "")
        token = request.headers.get("Authorization", "").replace("Bearer ", "")
        if not api_key and not token:
            raise _Fail(401, -1, "No valid authentication provided (user token or API key required)")
        given = (api_key or token).encode("utf-8", "replace")
        if not hmac.compare_digest(given, self.api_key.encode("utf-8")):
            raise _Fail(401, "invalid_authentication", "Invalid authentication credentials")

    @staticmethod
    def _json(request: Request) -> Any:
        """What `await quart.request.json` gives: None unless the content type is JSON;
        a 500 for an empty or unparseable JSON body; else the value, object or not."""
        mimetype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if mimetype != "application/json" and not (mimetype.startswith("application/")
                                                   and mimetype.endswith("+json")):
            return None
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        empty = not chunked and request.headers.get("Content-Length", "0").strip() in ("", "0")
        unparsed = request.body is None and (request.body_error or "").startswith("Invalid JSON")
        if empty or unparsed:
            raise _internal()
        return request.body

    @staticmethod
    def _error(fail: _Fail, committed: bool) -> Reply:
        if fail.status == 500:
            request_id = _new_uuid()
            return Reply(500, {"code": "internal_error", "msg": "Internal server error", "request_id": request_id},
                         committed=committed, headers={"X-Request-Id": request_id})
        return Reply(fail.status, {"code": fail.code, "msg": fail.msg}, committed=committed)

    @staticmethod
    def _include_secret(request: Request) -> bool:
        raw = _first_arg(request, "include_secret")
        if raw is None:
            return True  # the global key holds PROVIDER_SECRET_MANAGE
        value = raw.strip().lower()
        if value not in ("true", "false"):
            raise _bad("include_secret must be either true or false")
        return value == "true"

    def _system_info(self, request: Request) -> dict:
        return {"version": VERSION, "edition": "community", "debug": False, "deployment_mode": "oss",
                "disable_models_service": True, "enable_marketplace": False,
                "limitation": {"max_bots": -1, "max_extensions": -1, "max_knowledge_bases": -1,
                               "max_pipelines": -1}}

    # --- providers --------------------------------------------------------------------

    def _find_or_create_provider(self, requester: Any, base_url: Any, api_keys: Any) -> str:
        keys = normalize_api_keys(restore_secrets(api_keys, sensitive=True))
        for p in self._providers.values():
            if (p["requester"] == requester and p["base_url"] == base_url
                    and sorted(p["api_keys"] or []) == sorted(keys)):
                return p["uuid"]
        try:
            name = urlsplit(base_url).netloc or requester if base_url else requester
        except (TypeError, ValueError, AttributeError):
            name = requester
        return self._insert_provider({"name": name, "requester": requester, "base_url": base_url,
                                      "api_keys": keys})

    def _insert_provider(self, body: dict) -> str:
        """create_provider: the row is committed before the requester is loaded, so an
        unknown requester is a 500 that leaves the provider behind."""
        data = {**body, "uuid": _new_uuid(), "workspace_uuid": self.workspace_uuid}
        data["api_keys"] = normalize_api_keys(restore_secrets(data.get("api_keys"), sensitive=True))
        _check_row(data, PROVIDER_COLUMNS, ("name", "requester", "base_url"))
        if any(k not in data for k in ("name", "requester", "base_url")):
            raise _internal()
        now = _now()
        self._providers[data["uuid"]] = {**data, "created_at": now, "updated_at": now}
        self._wrote = True
        if data["requester"] not in REQUESTERS:
            raise _internal()
        return data["uuid"]

    def _provider_out(self, p: dict, include_secret: bool) -> dict:
        out = copy.deepcopy(p) if include_secret else redact_secrets(p)
        out["llm_count"] = sum(1 for m in self._models.values() if m["provider_uuid"] == p["uuid"])
        out["embedding_count"] = out["rerank_count"] = 0
        return out

    def _list_providers(self, request: Request) -> dict:
        include = self._include_secret(request)
        # No ORDER BY on the server: the order depends on SQLite's plan (sometimes by
        # name, sometimes by insertion). The emulator answers in insertion order.
        return {"providers": [self._provider_out(p, include) for p in self._providers.values()]}

    def _get_provider(self, request: Request, uuid: str) -> dict:
        include = self._include_secret(request)
        p = self._providers.get(uuid)
        if p is None:
            raise _Fail(404, -1, "provider not found")
        return {"provider": self._provider_out(p, include)}

    def _create_provider_route(self, request: Request) -> dict:
        body = self._json(request)
        if not isinstance(body, dict):
            raise _internal()
        return {"uuid": self._insert_provider(body)}

    def _update_provider(self, request: Request, uuid: str) -> None:
        body = self._json(request)
        if not isinstance(body, dict):
            raise _internal()
        data = {k: v for k, v in body.items() if k not in ("uuid", "workspace_uuid")}
        p = self._providers.get(uuid)
        if p is None and {"requester", "base_url", "api_keys"} & data.keys():
            raise _not_found()
        if "api_keys" in data:
            keys = restore_secrets(data["api_keys"], p["api_keys"], sensitive=True)
            data["api_keys"] = normalize_api_keys(keys)
        _check_row(data, PROVIDER_COLUMNS, ("name", "requester", "base_url"))
        if p is None:
            raise _not_found()
        p.update(copy.deepcopy(data), updated_at=_now())
        self._wrote = True
        if p["requester"] not in REQUESTERS:
            raise _internal()  # reload_provider fails after the commit

    def _delete_provider(self, request: Request, uuid: str) -> None:
        values = request.query.get("cascade")
        if values is not None and (len(values) != 1 or values[0] not in ("true", "false")):
            raise _bad("cascade must be a single true or false value")
        cascade = values is not None and values[0] == "true"
        if uuid not in self._providers:
            raise _not_found()
        users = [m for m, row in self._models.items() if row["provider_uuid"] == uuid]
        if users and not cascade:
            raise _bad("Cannot delete provider: LLM models still reference it")
        for m in users:
            del self._models[m]
        del self._providers[uuid]
        self._wrote = True

    # --- models -----------------------------------------------------------------------

    def _model_out(self, m: dict, include_secret: bool, nested: bool = True) -> dict:
        if not isinstance(m["name"], str):
            raise _internal()  # the requester's reasoning lookup calls name.lower()
        out = copy.deepcopy(m)
        out["reasoning_capabilities"] = _reasoning_capabilities(m["abilities"])
        provider = self._providers.get(m["provider_uuid"]) if nested else None
        if provider is not None:
            out["provider"] = copy.deepcopy(provider)
        if not include_secret:
            if "extra_args" in out:
                out["extra_args"] = redact_secrets(out["extra_args"])
            if "provider" in out:
                out["provider"]["api_keys"] = mask_secret_value(out["provider"]["api_keys"])
        return out

    def _list_models(self, request: Request) -> dict:
        include = self._include_secret(request)
        provider_uuid = _first_arg(request, "provider_uuid")
        if provider_uuid:
            if provider_uuid not in self._providers:
                raise _not_found()
            return {"models": [self._model_out(m, include, nested=False) for m in self._models.values()
                               if m["provider_uuid"] == provider_uuid]}
        # No ORDER BY, as for providers: insertion order here.
        return {"models": [self._model_out(m, include) for m in self._models.values()]}

    def _get_model(self, request: Request, uuid: str) -> dict:
        include = self._include_secret(request)
        m = self._models.get(uuid)
        if m is None:
            raise _Fail(404, -1, "model not found")
        return {"model": self._model_out(m, include)}

    def _resolve_provider(self, data: dict) -> None:
        """An inline `provider` becomes `provider_uuid`: a reference when it has a
        uuid (its other fields ignored), else found or created."""
        if "provider" not in data:
            return
        spec = data.pop("provider")
        if not isinstance(spec, dict):
            raise _internal()
        if spec.get("uuid"):
            data["provider_uuid"] = spec["uuid"]
            return
        data["provider_uuid"] = self._find_or_create_provider(
            spec.get("requester", ""), spec.get("base_url", ""), spec.get("api_keys", []))

    def _llm_provider(self, provider_uuid: Any) -> dict:
        p = self._providers.get(provider_uuid) if isinstance(provider_uuid, str) else None
        if p is None:
            raise _not_found()
        if p["requester"] in NON_LLM_REQUESTERS:
            raise _bad(f"Provider {p['requester']} does not support llm models")
        return p

    def _create_model(self, request: Request) -> dict:
        body = self._json(request)
        if not isinstance(body, dict):
            raise _internal()
        data = {**body, "uuid": _new_uuid(), "workspace_uuid": self.workspace_uuid}
        if "extra_args" in data:
            data["extra_args"] = restore_secrets(data["extra_args"])
        self._resolve_provider(data)
        if "provider_uuid" not in data:
            raise _internal()  # KeyError: 'provider_uuid'
        provider = self._llm_provider(data["provider_uuid"])
        data["reasoning_config"] = _reasoning_config(data.get("reasoning_config"), data.get("abilities"),
                                                     data.get("extra_args"))
        if provider["requester"] not in REQUESTERS or set(data) - MODEL_COLUMNS:
            raise _internal()  # no runtime provider; LLMModel(**data) TypeError
        _check_level(data)
        _check_row(data, MODEL_COLUMNS, ("name", "prefered_ranking"))
        if "name" not in data:
            raise _internal()  # NOT NULL
        now = _now()
        self._models[data["uuid"]] = {"abilities": [], "context_length": None, "extra_args": {},
                                      "prefered_ranking": 0, **copy.deepcopy(data),
                                      "created_at": now, "updated_at": now}
        self._wrote = True
        return {"uuid": data["uuid"]}

    def _update_model(self, request: Request, uuid: str) -> None:
        body = self._json(request)
        m = self._models.get(uuid)
        if m is None:
            raise _not_found()
        self._model_out(m, True)  # the update re-reads the model first
        if not isinstance(body, dict):
            raise _internal()
        data = {k: v for k, v in body.items() if k not in ("uuid", "workspace_uuid")}
        if "extra_args" in data:
            data["extra_args"] = restore_secrets(data["extra_args"], m["extra_args"])
        self._resolve_provider(data)
        provider = self._llm_provider(data.get("provider_uuid", m["provider_uuid"]))
        merged = {k: v for k, v in {**m, **data}.items()
                  if k not in ("provider", "created_at", "updated_at", "reasoning_capabilities")}
        data["reasoning_config"] = _reasoning_config(merged.get("reasoning_config"), merged.get("abilities"),
                                                     merged.get("extra_args"))
        if provider["requester"] not in REQUESTERS or set(merged) - MODEL_COLUMNS:
            raise _internal()
        _check_level({**merged, "reasoning_config": data["reasoning_config"]})
        _check_row(data, MODEL_COLUMNS, ("name", "prefered_ranking"))
        m.update(copy.deepcopy(data), updated_at=_now())
        self._wrote = True

    def _delete_model(self, request: Request, uuid: str) -> None:
        if self._models.pop(uuid, None) is None:
            raise _not_found()
        self._wrote = True  # no reference check: pipelines keep the dangling uuid

    def _test_model(self, request: Request, uuid: str) -> None:
        body = self._json(request)
        if uuid == "_":
            name, base_url, keys, extra = self._unsaved_target(body)
        else:
            m = self._models.get(uuid)
            if m is None:
                raise _not_found()
            self._model_out(m, True)
            if not isinstance(body, dict):
                raise _internal()
            p = self._providers.get(m["provider_uuid"])
            if p is None or p["requester"] not in REQUESTERS:
                raise _internal()
            name, base_url, keys, extra = m["name"], p["base_url"], p["api_keys"], m["extra_args"]
        payload = {"model": name, "messages": [{"role": "user", "content": TEST_PROMPT}]}
        for args in (extra, body.get("extra_args")):
            if isinstance(args, dict):
                payload.update(copy.deepcopy(args))  # call-level extra_args win
        # The upstream call can take seconds: let other clients in meanwhile.
        self._lock.release()
        try:
            problem = call_upstream(str(base_url), keys[0] if keys else "", payload)
        finally:
            self._lock.acquire()
        self._wrote = False  # a write that ran meanwhile was its own request's
        if problem is not None:
            raise _Fail(400, "model_test_failed", f"Model request failed: {problem}")

    def _unsaved_target(self, body: Any) -> tuple[Any, Any, list[str], Any]:
        if not isinstance(body, dict):
            raise _internal()
        _reasoning_config(body.get("reasoning_config"), body.get("abilities"), body.get("extra_args"))
        spec = body.get("provider")
        if isinstance(spec, dict) and not spec.get("uuid"):
            keys = normalize_api_keys(restore_secrets(spec.get("api_keys", []), sensitive=True))
            return body.get("name"), spec.get("base_url", ""), keys, body.get("extra_args")
        ref = spec.get("uuid") if isinstance(spec, dict) else body.get("provider_uuid")
        p = self._providers.get(ref) if isinstance(ref, str) else None
        if p is None:
            raise _internal()
        return body.get("name"), p["base_url"], p["api_keys"], body.get("extra_args")

    # --- pipelines --------------------------------------------------------------------

    def _list_pipelines(self, request: Request) -> dict:
        sort_by = _first_arg(request, "sort_by") or "created_at"
        descending = (_first_arg(request, "sort_order") or "DESC") == "DESC"
        rows = list(self._pipelines.values())  # any other sort_by: no ORDER BY
        if sort_by in ("created_at", "updated_at"):  # ties keep insertion order
            rows.sort(key=lambda p: p[sort_by], reverse=descending)
        return {"pipelines": copy.deepcopy(rows)}  # list items carry the full config

    def _get_pipeline(self, request: Request, uuid: str) -> dict:
        p = self._pipelines.get(uuid)
        if p is None:
            raise _Fail(404, -1, "pipeline not found")
        return {"pipeline": copy.deepcopy(p)}

    def _create_pipeline(self, request: Request) -> dict:
        body = self._json(request)
        if not isinstance(body, dict):
            raise _internal()
        if "config" in body:
            validate_pipeline_config(body["config"])
        data = {"description": "", **body, "uuid": _new_uuid(), "is_default": body.get("is_default") is True}
        if data.get("config", {}) == {}:
            data["config"] = self._new_pipeline_config()
        _check_row(data, PIPELINE_COLUMNS, ("name", "description"))
        if "name" not in data:
            raise _internal()  # NOT NULL
        p = self._insert_pipeline(data, _now())
        failure = load_failure(p["config"])
        if failure is not None:
            raise failure  # the row stays
        return {"uuid": p["uuid"]}

    def _insert_pipeline(self, data: dict, now: str) -> dict:
        row = {"emoji": "\u2699\ufe0f", "extensions_preferences": copy.deepcopy(DEFAULT_EXTENSIONS),
               **copy.deepcopy(data), "workspace_uuid": self.workspace_uuid, "for_version": VERSION,
               "stages": list(DEFAULT_STAGES), "created_at": now, "updated_at": now}
        row.setdefault("is_default", False)
        self._pipelines[row["uuid"]] = row
        self._wrote = True
        return row

    @staticmethod
    def _new_pipeline_config() -> dict:
        """templates/default-pipeline-config.json as is: with plugins off no runner
        is found, so `ai.runner.id` stays "" and no model is filled in."""
        return default_pipeline_config()

    def _update_pipeline(self, request: Request, uuid: str) -> None:
        body = self._json(request)
        if not isinstance(body, dict):
            raise _internal()
        data = {k: v for k, v in body.items() if k not in _PROTECTED_PIPELINE}
        p = self._pipelines.get(uuid)
        if "config" in data:
            if p is None:
                raise _not_found()
            current = p["config"] if p["config"] is not None else {}
            data["config"] = restore_secrets(data["config"], current)
            validate_pipeline_config(data["config"])
        _check_row(data, PIPELINE_COLUMNS, ("name", "description", "config"))
        if p is None:
            raise _not_found()
        p.update(copy.deepcopy(data), updated_at=_now())  # `config` is replaced whole
        self._wrote = True
        failure = load_failure(p["config"])
        if failure is not None:
            raise failure  # committed all the same

    def _delete_pipeline(self, request: Request, uuid: str) -> None:
        if self._pipelines.pop(uuid, None) is None:
            raise _not_found()
        self._wrote = True
