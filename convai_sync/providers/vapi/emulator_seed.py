"""What the Vapi emulator accepts: the request-body rules (shared by the HTTP routes
and by seeds, so a seeded account is one the API could have produced) and the seed
format. Rules and messages follow /work/shared/VAPI_API.md: NestJS class-validator
with whitelist + forbidNonWhitelisted, nested errors prefixed with their path
("model.property foo should not exist", "model.messages.0.role must be ...").

Seed (a dict, or YAML via vapi_demo_seed()):

    credentials: [{name, apiKey, id?, provider? (custom-llm), authenticationPlan?,
                   createdAt?, updatedAt?}]          # other providers: opaque extra keys
    assistants:  [{name, id?, model: {...}, credentialIds?: [credential names or ids],
                   createdAt?, updatedAt?, ...any CreateAssistantDTO field}]

A credentialIds entry that names no seeded credential must be a uuid: it seeds an
assistant already pinned to a deleted credential (a pre-existing orphan).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from convai_sync.errors import ConvaiSyncError

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

# CreateAssistantDTO.credentials oneOf providers (SPEC): the providers /credential takes.
CREDENTIAL_PROVIDERS = tuple(sorted((
    "11labs anthropic anthropic-bedrock anyscale assembly-ai azure azure-openai byo-sip-trunk "
    "cartesia cerebras cloudflare custom-credential custom-llm deep-seek deepgram deepinfra email "
    "gcp ghl.oauth2-authorization gladia gohighlevel google google.calendar.oauth2-authorization "
    "google.calendar.oauth2-client google.sheets.oauth2-authorization groq hume inflection-ai "
    "inworld langfuse lmnt make microsoft minimax mistral neuphonic openai openrouter "
    "perplexity-ai playht rime-ai runpod s3 s3-compatible slack-webhook "
    "slack.oauth2-authorization smallest-ai soniox speechmatics supabase tavus together-ai "
    "twilio vonage webhook wellsaid xai").split()))
# CreateAssistantDTO.model oneOf providers (SPEC).
MODEL_PROVIDERS = ("anthropic", "anthropic-bedrock", "anyscale", "cerebras", "custom-llm",
                   "deep-seek", "deepinfra", "google", "groq", "inflection-ai", "minimax",
                   "openai", "openrouter", "perplexity-ai", "together-ai", "xai", "vapi")
MESSAGE_ROLES = ("assistant", "function", "user", "system", "tool")
SECRET_KEYS = frozenset({"apiKey", "clientSecret"})  # write-only: never returned or logged

Errors = list[str]
Rule = Callable[[str, Any], Errors]
_MISSING = object()  # a required property that was not sent at all


# --- class-validator style checks: each takes the property name and its value ---------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def string(lo: int | None = None, hi: int | None = None) -> Rule:
    def check(name: str, v: Any) -> Errors:
        if not isinstance(v, str):
            return [f"{name} must be a string"]
        if lo is not None and len(v) < lo:
            return [f"{name} must be longer than or equal to {lo} characters"]
        if hi is not None and len(v) > hi:
            return [f"{name} must be shorter than or equal to {hi} characters"]
        return []
    return check


def number(lo: float | None = None, hi: float | None = None) -> Rule:
    def check(name: str, v: Any) -> Errors:
        if not _is_number(v):
            return [f"{name} must be a number conforming to the specified constraints"]
        if lo is not None and v < lo:
            return [f"{name} must not be less than {lo}"]
        if hi is not None and v > hi:
            return [f"{name} must not be greater than {hi}"]
        return []
    return check


def enum(*values: str) -> Rule:
    return lambda name, v: ([] if isinstance(v, str) and v in values else
                            [f"{name} must be one of the following values: {', '.join(values)}"])


def boolean(name: str, v: Any) -> Errors:
    return [] if isinstance(v, bool) else [f"{name} must be a boolean value"]


def obj(name: str, v: Any) -> Errors:
    return [] if isinstance(v, dict) else [f"{name} must be an object"]


def array(name: str, v: Any) -> Errors:
    return [] if isinstance(v, list) else [f"{name} must be an array"]


def anything(name: str, v: Any) -> Errors:
    return []  # a oneOf of strings and objects the emulator does not model


def nullable_string(name: str, v: Any) -> Errors:
    return [] if v is None else string(hi=100_000_000)(name, v)  # OpenAIMessage.content


def strings(lo: int | None = None, hi: int | None = None) -> Rule:
    item = string(lo, hi)

    def check(name: str, v: Any) -> Errors:
        if not isinstance(v, list):
            return [f"{name} must be an array"]
        if any(item(name, x) for x in v):
            return [f"each value in {name} must be a string"]
        return []
    return check


def nest(parent: str, errors: Iterable[str]) -> Errors:
    return [f"{parent}.{e}" for e in errors]


def fields(body: Mapping[str, Any], rules: Mapping[str, Rule],
           required: Iterable[str] = ()) -> Errors:
    """Whitelist + forbidNonWhitelisted; optional properties skip null (IsOptional)."""
    errors = [f"property {k} should not exist" for k in body if k not in rules]
    required = set(required)
    for name, rule in rules.items():
        value = body.get(name, _MISSING)
        if name in required or (value is not None and value is not _MISSING):
            errors += rule(name, None if value is _MISSING and rule is not nullable_string
                           else value)
    return errors


def nested(rules: Mapping[str, Rule], required: Iterable[str] = ()) -> Rule:
    return lambda name, v: obj(name, v) or nest(name, fields(v, rules, required))


def each(item: Rule) -> Rule:
    def check(name: str, v: Any) -> Errors:
        if not isinstance(v, list):
            return [f"{name} must be an array"]
        return [e for i, x in enumerate(v) for e in item(f"{name}.{i}", x)]
    return check


# --- credentials ---------------------------------------------------------------------------

OAUTH2_PLAN = nested({"type": enum("oauth2"), "url": string(), "clientId": string(),
                      "clientSecret": string(), "scope": string(hi=1000)},
                     required=("type", "url", "clientId", "clientSecret"))
CREDENTIAL_READ_ONLY = ("id", "orgId", "createdAt", "updatedAt", "authenticationSession")
CUSTOM_LLM_CREDENTIAL: dict[str, Rule] = {
    "provider": enum("custom-llm"), "apiKey": string(hi=10000),
    "authenticationPlan": OAUTH2_PLAN, "name": string(1, 40)}


def check_credential_create(body: Mapping[str, Any]) -> Errors:
    """CreateCustomLLMCredentialDTO; other providers are opaque apart from `name`."""
    provider = body.get("provider")
    if provider not in CREDENTIAL_PROVIDERS:
        return enum(*CREDENTIAL_PROVIDERS)("provider", provider)
    if provider == "custom-llm":
        return fields(body, CUSTOM_LLM_CREDENTIAL, required=("provider", "apiKey"))
    return _opaque_credential(body)


def check_credential_update(body: Mapping[str, Any], provider: str) -> Errors:
    """UpdateCustomLLMCredentialDTO behind a provider-discriminated union: `provider` is
    required (a guess from EXT's `{provider} & Update...DTO` type) and cannot change
    (unknown; assumed)."""
    sent = body.get("provider")
    if sent in CREDENTIAL_PROVIDERS and sent != provider:
        return [f"provider cannot be changed from {provider} to {sent}"]  # wording is a guess
    if sent != provider:
        return enum(*CREDENTIAL_PROVIDERS)("provider", sent)
    if provider == "custom-llm":
        return fields(body, CUSTOM_LLM_CREDENTIAL, required=("provider",))
    return _opaque_credential(body)


def _opaque_credential(body: Mapping[str, Any]) -> Errors:
    """Another provider's credential: only its name and the server-set fields are checked."""
    errors = [f"property {k} should not exist" for k in CREDENTIAL_READ_ONLY if k in body]
    return errors + (string(1, 40)("name", body["name"]) if body.get("name") is not None else [])


# --- assistants ----------------------------------------------------------------------------

def _headers(name: str, v: Any) -> Errors:
    if not isinstance(v, dict):
        return [f"{name} must be an object"]
    errors = [f"{name}.{k} must be a string" for k, x in v.items() if not isinstance(x, str)]
    if any(k.lower() == "authorization" for k in v):  # SPEC: use a custom-llm credential
        errors.append(f"{name} cannot override Authorization; use a custom-llm credential")
    return errors


def _tool(name: str, v: Any) -> Errors:
    # Create*ToolDTO is a oneOf by `type`; the emulator checks only the discriminator.
    return obj(name, v) or nest(name, string()("type", v.get("type")))


CUSTOM_LLM_MODEL: dict[str, Rule] = {
    "provider": enum("custom-llm"), "url": string(), "model": string(),
    "temperature": number(0, 2), "maxTokens": number(50, 10000),
    "timeoutSeconds": number(0, 300), "metadataSendMode": enum("off", "variable", "destructured"),
    "headers": _headers,
    "messages": each(nested({"role": enum(*MESSAGE_ROLES), "content": nullable_string},
                            required=("role", "content"))),
    "tools": each(_tool), "toolIds": strings(),
    "toolRefs": each(nested({"toolId": lambda n, v: [] if isinstance(v, str) and UUID_RE.match(v)
                             else [f"{n} must be a UUID"], "version": string()},
                            required=("toolId", "version"))),
    "knowledgeBase": nested({"provider": enum("custom-knowledge-base"), "server": obj},
                            required=("provider", "server")),
    "wordLevelConfidenceEnabled": boolean, "emotionRecognitionEnabled": boolean,
    "numFastTurns": number(0)}


def _model(name: str, v: Any) -> Errors:
    if not isinstance(v, dict):
        return [f"{name} must be an object"]
    provider = v.get("provider")
    if provider not in MODEL_PROVIDERS:
        return nest(name, enum(*MODEL_PROVIDERS)("provider", provider))
    if provider == "custom-llm":
        return nest(name, fields(v, CUSTOM_LLM_MODEL, required=("provider", "url", "model")))
    # Other providers are opaque here; all but `vapi` require `model` (SPEC).
    return [] if provider == "vapi" else nest(name, string()("model", v.get("model")))


def _inline_credential(name: str, v: Any) -> Errors:
    return obj(name, v) or nest(name, check_credential_create(v))


_OBJECTS = ("transcriber", "voice", "observabilityPlan", "compliancePlan", "metadata",
            "backgroundSpeechDenoisingPlan", "analysisPlan", "artifactPlan", "startSpeakingPlan",
            "stopSpeakingPlan", "monitorPlan", "server", "keypadInputPlan")
ASSISTANT: dict[str, Rule] = {
    **{k: obj for k in _OBJECTS},
    **{k: array for k in ("transportConfigurations", "hooks", "clientMessages", "serverMessages")},
    "model": _model, "name": string(hi=40), "firstMessage": string(),
    "firstMessageInterruptionsEnabled": boolean, "modelOutputInMessagesEnabled": boolean,
    "firstMessageMode": enum("assistant-speaks-first",
                             "assistant-speaks-first-with-model-generated-message",
                             "assistant-waits-for-user"),
    "voicemailDetection": anything, "backgroundSound": anything,
    "maxDurationSeconds": number(10, 43200), "voicemailMessage": string(hi=1000),
    "endCallMessage": string(hi=1000), "endCallPhrases": strings(2, 140),
    "credentials": each(_inline_credential), "credentialIds": strings()}
# Read-only on Assistant (SPEC, GITOPS canonical.ts): not in the whitelist, so sending
# one is "property id should not exist" like any unknown property.
ASSISTANT_READ_ONLY = ("id", "orgId", "createdAt", "updatedAt", "isDeleted", "latestVersion",
                       "analyticsMetadata", "isServerUrlSecretSet", "workflowIds")


def check_assistant(body: Mapping[str, Any]) -> Errors:
    """CreateAssistantDTO / UpdateAssistantDTO (same properties, none required)."""
    return fields(body, ASSISTANT)


# --- seeds ---------------------------------------------------------------------------------

_SEED_META = ("id", "createdAt", "updatedAt")


def iso_ms(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and Z, as Vapi writes timestamps."""
    moment = moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment  # naive: UTC
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 timestamp; without an offset it is taken as UTC. ValueError if not one."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def seed_id(kind: str, index: int, name: Any) -> str:
    """A stable uuid4-shaped id, so a seed without ids seeds the same ids every run."""
    digest = hashlib.sha256(f"{kind}:{index}:{name}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def normalize_vapi_seed(data: Any, source: str = "seed") -> dict:
    """Check a seed and fill ids and providers; raises ConvaiSyncError on the first problem."""
    if not isinstance(data, dict) or set(data) - {"credentials", "assistants"}:
        raise ConvaiSyncError(f"{source}: expected a mapping with only 'credentials' and "
                              f"'assistants'")
    creds = [_seed_credential(c, i, f"{source}: credentials[{i}]")
             for i, c in enumerate(_seed_list(data, "credentials", source))]
    _unique([c["id"] for c in creds], f"{source}: credentials")
    assistants = [_seed_assistant(a, i, creds, f"{source}: assistants[{i}]")
                  for i, a in enumerate(_seed_list(data, "assistants", source))]
    _unique([a["id"] for a in assistants], f"{source}: assistants")
    return {"credentials": creds, "assistants": assistants}


def vapi_demo_seed() -> dict:
    """The drifted demo Vapi account shipped with the package."""
    path = Path(__file__).resolve().parents[2] / "data" / "vapi_demo_seed.yaml"
    return normalize_vapi_seed(yaml.safe_load(path.read_text("utf-8")), "vapi_demo_seed.yaml")


def _seed_list(data: dict, key: str, source: str) -> list:
    items = data.get(key) or []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ConvaiSyncError(f"{source}: '{key}' must be a list of mappings")
    return items


def _seed_meta(entry: dict, kind: str, index: int, where: str) -> dict:
    meta = {k: entry[k] for k in _SEED_META if k in entry}
    meta.setdefault("id", seed_id(kind, index, entry.get("name")))
    if not isinstance(meta["id"], str) or not UUID_RE.match(meta["id"]):
        raise ConvaiSyncError(f"{where}: id must be a uuid")
    meta["id"] = meta["id"].lower()
    for key in ("createdAt", "updatedAt"):
        if key in meta:
            try:
                value = meta[key]  # YAML already parses unquoted timestamps
                meta[key] = iso_ms(value if isinstance(value, dt.datetime) else parse_time(value))
            except (TypeError, ValueError, AttributeError):
                raise ConvaiSyncError(f"{where}: {key} must be an ISO 8601 timestamp") from None
    return meta


def _seed_credential(entry: dict, index: int, where: str) -> dict:
    body = {k: v for k, v in entry.items() if k not in _SEED_META}
    body.setdefault("provider", "custom-llm")
    _raise(where, check_credential_create(body))
    return {**_seed_meta(entry, "credential", index, where), **body}


def _seed_assistant(entry: dict, index: int, creds: list[dict], where: str) -> dict:
    body = {k: v for k, v in entry.items() if k not in _SEED_META}
    _raise(where, check_assistant(body))
    if body.get("credentialIds") is not None:
        body["credentialIds"] = [_resolve(ref, creds, where) for ref in body["credentialIds"]]
    return {**_seed_meta(entry, "assistant", index, where), **body}


def _resolve(ref: str, creds: list[dict], where: str) -> str:
    by_id = [c["id"] for c in creds if c["id"] == ref.lower()]
    by_name = [c["id"] for c in creds if c.get("name") == ref]
    if len(by_name) > 1:
        raise ConvaiSyncError(f"{where}: credential name {ref!r} is ambiguous; use its id")
    if by_id or by_name:
        return (by_id or by_name)[0]
    if UUID_RE.match(ref):
        return ref  # pinned to a credential that no longer exists
    raise ConvaiSyncError(f"{where}: credentialIds: no credential named {ref!r}")


def _unique(ids: list[str], where: str) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ConvaiSyncError(f"{where}: duplicate id {dupes[0]}")


def _raise(where: str, errors: Errors) -> None:
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConvaiSyncError(f"{where}: {errors[0]}{more}")
