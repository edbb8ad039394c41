"""The LangBot HTTP contract, checked over raw HTTP (httpx, no convai-sync client)
against BOTH the emulator (convai_sync.providers.langbot.emulator) and a real
LangBot 4.11.2 server (tests/langbot_server.py, one per session; skipped when
.ci/install-langbot has not run, failed instead when CONVAI_SYNC_REQUIRE_LANGBOT=1).
Every test cleans up what it created: names and base URLs carry a per-test token,
and the teardown checks that nothing with that token is left on the server.

Where the real server disagreed with /work/shared/LANGBOT_API.md (the server wins,
and the emulator follows it):
1. `uuid` and `workspace_uuid` in a model PUT are silently dropped (200), not a
   500 like the other read-only keys (created_at, updated_at, reasoning_capabilities).
2. A model with a non-string `name` breaks more than the list: GET of that model,
   the `?provider_uuid=` list of its provider, and even a PUT that would fix the
   name are all 500s. Only DELETE gets out of it.
3. Pipeline configs only need `safety.content-filter.check-sensitive-words` and
   `output.long-text-processing.strategy` (read when the pipeline reloads after the
   write): a config without `trigger` or without `ai` gets a 200. An unknown
   long-text strategy is a 400 "Long message processing strategy not found: ..."
   that is committed all the same, and every later PUT of that pipeline gets the
   same 400 until the strategy is fixed.
4. `include_secret=false` masks every key ("***" per key, not one "***"), and
   masks sensitive keys inside `extra_args` (api_key, token, ...) too.
5. `POST /provider/providers` without `api_keys` is a 200 (stored as []); a
   provider PUT with an unknown requester is a 500 that is committed.
6. A failed model test against an upstream 401 reads "Model request failed:
   Invalid API key" (a refused connection reads "... Unknown error").
7. An inline `provider` together with `provider_uuid` on create: the inline
   provider wins.
8. Unknown routes and wrong methods are Quart's HTML 404/405, before any auth.
9. Model (and provider) lists have no defined order: "sorted by name" held for
   some sets of models and not for others (three models on one provider came back
   in insertion order on a fresh server). The emulator answers in insertion order.
"""
from __future__ import annotations

import copy
import json
import re
import socketserver
import threading
import time
import uuid as uuidlib
from dataclasses import astuple, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from convai_sync.emulator.faults import Faults
from convai_sync.errors import ConvaiSyncError
from convai_sync.providers.langbot.emulator import LangBotEmulator, langbot_demo_seed

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "langbot_pipeline_config.json"
RUNNER = "plugin:langbot-team/LocalAgent/default"
BUILTIN = "00000000-0000-0000-0000-000000000000"
REQUESTER = "openai-chat-completions"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")  # naive ISO, seconds
NO_AUTH = {"code": -1, "msg": "No valid authentication provided (user token or API key required)"}
BAD_AUTH = {"code": "invalid_authentication", "msg": "Invalid authentication credentials"}
NOT_FOUND = {"code": "resource_not_found", "msg": "Resource not found"}
IN_USE = {"code": -1, "msg": "Cannot delete provider: LLM models still reference it"}
MODELS, PROVIDERS, PIPELINES = "/api/v1/provider/models/llm", "/api/v1/provider/providers", "/api/v1/pipelines"
CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens on loopback


# --- targets: the emulator, and one real server per session -----------------------------

@dataclass
class Target:
    kind: str
    url: str
    key: str
    emulator: LangBotEmulator | None = None


@pytest.fixture(params=["emulator", "real"])
def langbot(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "real":
        server = request.getfixturevalue("real_langbot")
        yield Target("real", server.url, server.key)
        return
    emu = LangBotEmulator(api_key="lbk_emulator_" + uuidlib.uuid4().hex)
    emu.start()
    try:
        yield Target("emulator", emu.url, emu.api_key, emu)
    finally:
        emu.stop()


class Api:
    """Raw HTTP on one target, with the cleanup a shared real server needs."""

    def __init__(self, target: Target):
        self.target = target
        self.token = "cst" + uuidlib.uuid4().hex[:10]  # in every name and base URL this test makes
        self.http = httpx.Client(base_url=target.url, trust_env=False, timeout=30,
                                 headers={"X-API-Key": target.key, "Content-Type": "application/json"}, verify=False)

    def url(self, path: str = "/v1") -> str:
        """A base URL unique to this test (nothing listens there)."""
        return f"http://127.0.0.1:9/{self.token}{path}"

    def name(self, label: str) -> str:
        return f"{label}-{self.token}"

    def inline(self, keys: list[str] | None = None, base_url: str | None = None) -> dict:
        return {"requester": REQUESTER, "base_url": base_url or self.url(), "api_keys": keys or ["sk-1"]}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=body, **kw) if body is not None else self.http.post(path, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.http.put(path, json=body, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete(path, **kw)

    def create_model(self, label: str = "m", **body: Any) -> str:
        body.setdefault("name", self.name(label))
        if "provider_uuid" not in body:
            body.setdefault("provider", self.inline())
        return ok(self.post(MODELS, body))["uuid"]

    def model(self, uuid: str, **params: str) -> dict:
        return ok(self.get(f"{MODELS}/{uuid}", params=params))["model"]

    def create_pipeline(self, label: str = "p", **body: Any) -> str:
        body.setdefault("name", self.name(label))
        return ok(self.post(PIPELINES, body))["uuid"]

    def pipeline(self, uuid: str) -> dict:
        return ok(self.get(f"{PIPELINES}/{uuid}"))["pipeline"]

    def mine(self, items: list[dict], field: str = "name") -> list[dict]:
        return [i for i in items if self.token in str(i.get(field))]

    def my_providers(self) -> list[dict]:
        return self.mine(ok(self.get(PROVIDERS))["providers"], "base_url")

    def cleanup(self) -> None:
        """Delete every model, provider and pipeline carrying the token, then check."""
        for m in self.mine(ok(self.get(MODELS))["models"]):
            self.delete(f"{MODELS}/{m['uuid']}")
        for p in self.mine(ok(self.get(PROVIDERS))["providers"], "base_url"):
            self.delete(f"{PROVIDERS}/{p['uuid']}", params={"cascade": "true"})
        for p in self.mine(ok(self.get(PIPELINES))["pipelines"]):
            self.delete(f"{PIPELINES}/{p['uuid']}")
        assert not self.mine(ok(self.get(MODELS))["models"])
        assert not self.my_providers()
        assert not self.mine(ok(self.get(PIPELINES))["pipelines"])


@pytest.fixture
def api(langbot: Target) -> Iterator[Api]:
    a = Api(langbot)
    try:
        yield a
        a.cleanup()
    finally:
        a.http.close()


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"code", "msg", "data"} and body["code"] == 0 and body["msg"] == "ok", body
    return body["data"]


def internal_error(r: httpx.Response) -> None:
    assert r.status_code == 500, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["code"] == "internal_error" and body["msg"] == "Internal server error"
    assert uuidlib.UUID(body["request_id"]) and r.headers["X-Request-Id"] == body["request_id"]


def error(r: httpx.Response, status: int, msg: str | None = None, code: int | str = -1) -> None:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["code"] == code, body
    if msg is not None:
        assert body["msg"] == msg, body


def full_config(model_uuid: str, prompt: str = "You are A.") -> dict:
    """The fixture config with the LocalAgent runner on `model_uuid`."""
    config = json.loads(FIXTURE.read_text("utf-8"))
    config["ai"] = {"runner": {"id": RUNNER, "expire-time": 0},
                    "runner_config": {RUNNER: {"model": {"primary": model_uuid, "fallbacks": [], "reasoning": {}},
                                               "prompt": [{"role": "system", "content": prompt}],
                                               "knowledge-bases": []}}}
    return config


# --- envelope, auth, bodies ---------------------------------------------------------------

def test_envelope_and_auth(langbot: Target, api: Api) -> None:
    assert isinstance(ok(api.get(MODELS))["models"], list)
    url, key = langbot.url + MODELS, langbot.key
    with httpx.Client(trust_env=False, timeout=30, verify=False) as raw:
        assert raw.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert raw.get(url, headers={"Authorization": key}).status_code == 200  # "Bearer " is optional
        for headers in ({"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                        {"X-API-Key": "wrong", "Authorization": f"Bearer {key}"}):  # X-API-Key wins
            r = raw.get(url, headers=headers)
            assert (r.status_code, r.json()) == (401, BAD_AUTH), headers
        r = raw.get(url)
        assert (r.status_code, r.json()) == (401, NO_AUTH)
        r = raw.get(langbot.url + f"{PIPELINES}/{uuidlib.uuid4()}")
        assert (r.status_code, r.json()) == (401, NO_AUTH)  # auth before the 404
        # Routing comes before auth: an unknown route or method needs no key.
        assert raw.get(langbot.url + "/api/v1/no-such-route").status_code == 404
        assert raw.put(langbot.url + MODELS, json={}).status_code == 405
        assert raw.get(langbot.url + "/api/v1/system/info").json()["data"]["version"] == "v4.11.2"


def test_bodies_that_are_not_a_json_object_are_500(api: Api) -> None:
    name = api.name("body")
    cases = [(json.dumps({"name": name}).encode(), {"Content-Type": "text/plain"}),
             (json.dumps({"name": name}).encode(), {"Content-Type": ""}),
             (b"notjson", {}), (b"[]", {}), (b"", {})]
    for content, headers in cases:
        internal_error(api.http.post(PIPELINES, content=content, headers=headers))
        internal_error(api.http.post(MODELS, content=content, headers=headers))
    assert not api.mine(ok(api.get(PIPELINES))["pipelines"])
    # A model PUT looks the model up before it uses the body: unknown uuid, 404.
    r = api.http.put(f"{MODELS}/{uuidlib.uuid4()}", content=b"[]")
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


# --- models -----------------------------------------------------------------------------------

def test_model_crud_round_trip(api: Api) -> None:
    name = api.name("gpt-4o-mini")
    m = api.create_model(name=name, provider=api.inline(["sk-test-1"]), abilities=["func_call"],
                         extra_args={"temperature": 0.3}, context_length=128000)
    got = api.model(m)
    assert got["uuid"] == m and got["name"] == name
    assert got["abilities"] == ["func_call"] and got["extra_args"] == {"temperature": 0.3}
    assert got["context_length"] == 128000 and got["prefered_ranking"] == 0
    assert got["reasoning_config"] == {"level": "provider_default"}
    assert got["reasoning_capabilities"] == {"levels": ["provider_default"], "source": "unknown",
                                             "supported": False}
    assert STAMP.match(got["created_at"]) and STAMP.match(got["updated_at"])
    provider = got["provider"]
    assert provider["uuid"] == got["provider_uuid"] and provider["name"] == "127.0.0.1:9"
    assert (provider["requester"], provider["base_url"]) == (REQUESTER, api.url())
    assert provider["api_keys"] == ["sk-test-1"]
    listed = [x for x in ok(api.get(MODELS))["models"] if x["uuid"] == m]
    assert listed == [got]
    by_provider = ok(api.get(MODELS, params={"provider_uuid": got["provider_uuid"]}))["models"]
    assert by_provider == [{k: v for k, v in got.items() if k != "provider"}]
    assert ok(api.delete(f"{MODELS}/{m}")) is None
    r = api.get(f"{MODELS}/{m}")
    assert (r.status_code, r.json()) == (404, {"code": -1, "msg": "model not found"})
    for r in (api.put(f"{MODELS}/{m}", {"name": "x"}), api.delete(f"{MODELS}/{m}"),
              api.post(f"{MODELS}/{m}/test", {})):
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
    r = api.get(MODELS, params={"provider_uuid": str(uuidlib.uuid4())})
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


def test_secrets_in_clear_unless_include_secret_false(api: Api) -> None:
    m = api.create_model(provider=api.inline(["sk-a", "sk-b"]),
                         extra_args={"temperature": 0.2, "api_key": "sk-extra"})
    clear = api.model(m)
    assert clear["provider"]["api_keys"] == ["sk-a", "sk-b"] and clear["extra_args"]["api_key"] == "sk-extra"
    assert api.model(m, include_secret="true") == clear
    masked = api.model(m, include_secret="false")
    assert masked["provider"]["api_keys"] == ["***", "***"]
    assert masked["extra_args"] == {"temperature": 0.2, "api_key": "***"}
    listed = [x for x in ok(api.get(MODELS, params={"include_secret": "false"}))["models"] if x["uuid"] == m]
    assert listed == [masked]
    provider = [p for p in ok(api.get(PROVIDERS, params={"include_secret": "false"}))["providers"]
                if p["uuid"] == clear["provider_uuid"]]
    assert provider[0]["api_keys"] == ["***", "***"]
    for path in (MODELS, f"{MODELS}/{m}", PROVIDERS):
        r = api.get(path, params={"include_secret": "yes"})
        error(r, 400, "include_secret must be either true or false")


def test_put_is_a_partial_top_level_merge(api: Api) -> None:
    m = api.create_model(abilities=["func_call"], extra_args={"temperature": 0.3}, context_length=4096)
    before = api.model(m)
    assert ok(api.put(f"{MODELS}/{m}", {"name": api.name("renamed")})) is None
    after = api.model(m)
    assert after["name"] == api.name("renamed")
    keep = ("abilities", "extra_args", "context_length", "provider_uuid", "created_at", "uuid")
    assert {k: after[k] for k in keep} == {k: before[k] for k in keep}
    ok(api.put(f"{MODELS}/{m}", {"extra_args": {"top_p": 0.9}}))
    assert api.model(m)["extra_args"] == {"top_p": 0.9}  # replaced whole: temperature gone
    ok(api.put(f"{MODELS}/{m}", {}))
    ok(api.put(f"{MODELS}/{m}", {"uuid": str(uuidlib.uuid4()), "workspace_uuid": "zzz", "context_length": 8}))
    after = api.model(m)
    assert after["uuid"] == m and after["context_length"] == 8 and after["extra_args"] == {"top_p": 0.9}
    # What is left of a GET object once the read-only keys are dropped is a valid PUT.
    echo = {k: v for k, v in after.items() if k not in ("created_at", "updated_at", "reasoning_capabilities")}
    ok(api.put(f"{MODELS}/{m}", echo))


def test_updated_at_moves_on_put_and_pipelines_sort_by_time(api: Api) -> None:
    m = api.create_model()
    p = api.create_pipeline()
    before_m, before_p = api.model(m), api.pipeline(p)
    time.sleep(1.05)  # second resolution
    q = api.create_pipeline("q")
    ok(api.put(f"{MODELS}/{m}", {"context_length": 1}))
    after_m = api.model(m)
    assert after_m["created_at"] == before_m["created_at"] and after_m["updated_at"] > before_m["updated_at"]

    def order(**params: str) -> list[str]:
        return [x["uuid"] for x in api.mine(ok(api.get(PIPELINES, params=params))["pipelines"])]

    assert order() == [q, p] == order(sort_by="created_at", sort_order="DESC")  # the default
    assert order(sort_order="ASC") == [p, q]
    time.sleep(1.05)
    ok(api.put(f"{PIPELINES}/{p}", {"description": "d"}))
    after_p = api.pipeline(p)
    assert after_p["created_at"] == before_p["created_at"] and after_p["updated_at"] > before_p["updated_at"]
    assert order(sort_by="updated_at") == [p, q] and order() == [q, p]


def test_unknown_and_read_only_keys_are_500(api: Api) -> None:
    m = api.create_model(extra_args={"temperature": 0.3})
    before = api.model(m)
    for body in ({"description": "d"}, {"created_at": before["created_at"]}, {"updated_at": before["updated_at"]},
                 {"reasoning_capabilities": before["reasoning_capabilities"]}, before, {"name": None}):
        internal_error(api.put(f"{MODELS}/{m}", body))
    assert api.model(m) == before  # nothing written
    internal_error(api.post(MODELS, {"name": api.name("d"), "provider": api.inline(), "description": "hi"}))
    internal_error(api.post(MODELS, {"provider": api.inline()}))  # no name: NOT NULL
    internal_error(api.post(MODELS, {"name": api.name("x")}))  # no provider at all
    internal_error(api.post(MODELS, {}))
    internal_error(api.post(MODELS, {"name": [api.name("list")], "provider": api.inline()}))  # not a scalar
    internal_error(api.post(MODELS, {"name": api.name("ctx"), "provider": api.inline(), "context_length": [1]}))
    assert [x["uuid"] for x in api.mine(ok(api.get(MODELS))["models"])] == [m]


def test_model_bad_inputs(api: Api) -> None:
    name = api.name("bad")
    cases = [
        ({"reasoning_config": {"level": "high"}},
         "The reasoning ability must be enabled before selecting a reasoning level"),
        ({"reasoning_config": {"level": "bogus"}}, "Unsupported reasoning level: bogus"),
        ({"extra_args": {"api_key": "***"}}, "Masked secret has no existing value"),
        ({"provider": api.inline(["***"])}, "Masked secret has no existing value"),
    ]
    for extra, msg in cases:
        error(api.post(MODELS, {"name": name, "provider": api.inline(), **extra}), 400, msg)
    for ref in ({"provider_uuid": "nope"}, {"provider": {"uuid": "nope"}}):
        r = api.post(MODELS, {"name": name, **ref})
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
    # A requester that is not for LLMs: 400; one that does not exist: 500. Both leave a provider.
    error(api.post(MODELS, {"name": name, "provider": {**api.inline(), "requester": "jina-rerank"}}), 400,
          "Provider jina-rerank does not support llm models")
    unknown = {**api.inline(), "requester": "no-such-requester"}
    internal_error(api.post(MODELS, {"name": name, "provider": unknown}))
    left = sorted(p["requester"] for p in api.my_providers())
    assert left == ["jina-rerank", "no-such-requester", REQUESTER]  # the 400s above left the third
    assert not api.mine(ok(api.get(MODELS))["models"])


def test_non_string_name_breaks_reads_until_deleted(api: Api) -> None:
    good = api.create_model()
    shared = api.model(good)["provider_uuid"]
    bad = ok(api.post(MODELS, {"name": 123, "provider_uuid": shared}))["uuid"]
    try:
        internal_error(api.get(MODELS))
        internal_error(api.get(f"{MODELS}/{bad}"))
        internal_error(api.get(MODELS, params={"provider_uuid": shared}))
        internal_error(api.put(f"{MODELS}/{bad}", {"name": api.name("fixed")}))  # cannot repair it
        assert api.model(good)["uuid"] == good  # the other models still read one by one
    finally:
        ok(api.delete(f"{MODELS}/{bad}"))
    assert good in [m["uuid"] for m in ok(api.get(MODELS))["models"]]
    # A PUT can break a good model the same way.
    ok(api.put(f"{MODELS}/{good}", {"name": 456}))
    try:
        internal_error(api.get(MODELS))
    finally:
        ok(api.delete(f"{MODELS}/{good}"))
    ok(api.get(MODELS))


# --- providers ----------------------------------------------------------------------------

def test_builtin_provider(api: Api) -> None:
    builtin = [p for p in ok(api.get(PROVIDERS))["providers"] if p["uuid"] == BUILTIN]
    assert len(builtin) == 1
    assert (builtin[0]["name"], builtin[0]["requester"]) == ("LangBot Models", "space-chat-completions")
    assert {"llm_count", "embedding_count", "rerank_count"} <= set(builtin[0])


def test_inline_provider_is_find_or_create_and_providers_pile_up(api: Api) -> None:
    a = api.create_model("a", provider=api.inline(["k-a", "k-b"]))
    b = api.create_model("b", provider=api.inline(["k-b", "k-a", " k-a ", ""]))  # order, blanks, dups
    shared = api.model(a)["provider_uuid"]
    assert api.model(b)["provider_uuid"] == shared
    assert api.model(b)["provider"]["api_keys"] == ["k-a", "k-b"]
    got = ok(api.get(f"{PROVIDERS}/{shared}"))["provider"]
    assert got["llm_count"] == 2 and got["name"] == "127.0.0.1:9" and got["api_keys"] == ["k-a", "k-b"]
    # A reference by uuid ignores the rest of the object; provider_uuid works too.
    c = api.create_model("c", provider={"uuid": shared, "api_keys": ["ignored"], "base_url": "http://x"})
    d = api.create_model("d", provider_uuid=shared)
    assert {api.model(x)["provider_uuid"] for x in (c, d)} == {shared}
    assert ok(api.get(f"{PROVIDERS}/{shared}"))["provider"]["api_keys"] == ["k-a", "k-b"]
    # An inline provider beats provider_uuid on create.
    e = api.create_model("e", provider_uuid=shared, provider=api.inline(["k-e"]))
    assert api.model(e)["provider_uuid"] != shared
    # Rotating a model's key through an inline provider: a new provider, the old one kept.
    ok(api.put(f"{MODELS}/{a}", {"provider": api.inline(["k-rotated"])}))
    rotated = api.model(a)
    assert rotated["provider_uuid"] not in (shared, api.model(e)["provider_uuid"])
    assert rotated["provider"]["api_keys"] == ["k-rotated"]
    assert ok(api.get(f"{PROVIDERS}/{shared}"))["provider"]["llm_count"] == 3
    error(api.put(f"{MODELS}/{a}", {"provider": api.inline(["***"])}), 400, "Masked secret has no existing value")
    # The provider is found or created before the PUT fails on an unknown key.
    internal_error(api.put(f"{MODELS}/{a}", {"description": "x", "provider": api.inline(["k-leak"])}))
    assert api.model(a)["provider"]["api_keys"] == ["k-rotated"]
    assert [p["llm_count"] for p in api.my_providers() if p["api_keys"] == ["k-leak"]] == [0]
    for x in (a, b, c, d, e):
        ok(api.delete(f"{MODELS}/{x}"))
    counts = {p["uuid"]: p["llm_count"] for p in api.my_providers()}
    assert len(counts) == 4 and set(counts.values()) == {0}  # orphans: never deleted with their models


def test_provider_crud_and_delete_refused_while_in_use(api: Api) -> None:
    p = ok(api.post(PROVIDERS, {"name": api.name("prov"), "requester": REQUESTER, "base_url": api.url(),
                                "api_keys": ["k1"]}))["uuid"]
    got = ok(api.get(f"{PROVIDERS}/{p}"))["provider"]
    assert (got["name"], got["api_keys"], got["llm_count"]) == (api.name("prov"), ["k1"], 0)
    assert STAMP.match(got["created_at"])
    ok(api.put(f"{PROVIDERS}/{p}", {"name": api.name("prov2"), "api_keys": ["***", "k2"]}))
    got = ok(api.get(f"{PROVIDERS}/{p}"))["provider"]
    assert (got["name"], got["api_keys"]) == (api.name("prov2"), ["k1", "k2"])  # "***" kept the stored key
    internal_error(api.put(f"{PROVIDERS}/{p}", {"llm_count": 3}))
    m = api.create_model(provider_uuid=p)
    r = api.delete(f"{PROVIDERS}/{p}")
    assert (r.status_code, r.json()) == (400, IN_USE)
    error(api.delete(f"{PROVIDERS}/{p}", params={"cascade": "maybe"}), 400,
          "cascade must be a single true or false value")
    r = api.delete(f"{PROVIDERS}/{p}", params={"cascade": "false"})
    assert (r.status_code, r.json()) == (400, IN_USE)
    assert api.model(m)["provider_uuid"] == p
    ok(api.delete(f"{PROVIDERS}/{p}", params={"cascade": "true"}))
    r = api.get(f"{MODELS}/{m}")
    assert (r.status_code, r.json()) == (404, {"code": -1, "msg": "model not found"})
    r = api.get(f"{PROVIDERS}/{p}")
    assert (r.status_code, r.json()) == (404, {"code": -1, "msg": "provider not found"})
    for r in (api.delete(f"{PROVIDERS}/{p}"), api.put(f"{PROVIDERS}/{p}", {"name": "x"})):
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
    # No api_keys is fine; no base_url, an unknown column or a bad key list is not.
    q = ok(api.post(PROVIDERS, {"name": api.name("nokeys"), "requester": REQUESTER, "base_url": api.url("/q")}))
    assert ok(api.get(f"{PROVIDERS}/{q['uuid']}"))["provider"]["api_keys"] == []
    internal_error(api.post(PROVIDERS, {"name": api.name("nourl"), "requester": REQUESTER}))
    internal_error(api.post(PROVIDERS, {"name": api.name("x"), "requester": REQUESTER, "base_url": api.url(),
                                        "llm_count": 1}))
    # An unknown requester: the PUT commits, then reloading the provider fails.
    internal_error(api.put(f"{PROVIDERS}/{q['uuid']}", {"requester": "no-such"}))
    assert ok(api.get(f"{PROVIDERS}/{q['uuid']}"))["provider"]["requester"] == "no-such"
    ok(api.delete(f"{PROVIDERS}/{q['uuid']}"))


# --- pipelines ----------------------------------------------------------------------------

def test_pipeline_create_get_list(api: Api) -> None:
    template = json.loads(FIXTURE.read_text("utf-8"))
    p = api.create_pipeline()
    got = api.pipeline(p)
    assert got["uuid"] == p and got["name"] == api.name("p") and got["description"] == ""
    assert got["config"] == template  # no plugins: the template as is, ai.runner.id ""
    assert got["is_default"] is False and got["emoji"] == "\u2699\ufe0f" and got["for_version"] == "v4.11.2"
    assert isinstance(got["stages"], list) and STAMP.match(got["created_at"])
    q = api.create_pipeline("q", config={}, description="dd")
    assert api.pipeline(q)["config"] == template and api.pipeline(q)["description"] == "dd"
    r = api.create_pipeline("r", config=full_config("not-checked"), uuid=str(uuidlib.uuid4()))
    assert api.pipeline(r)["config"] == full_config("not-checked")  # model uuids are not checked
    mine = {x["uuid"]: x for x in api.mine(ok(api.get(PIPELINES))["pipelines"])}
    assert mine == {x: api.pipeline(x) for x in (p, q, r)}  # list items carry the full config
    internal_error(api.post(PIPELINES, {}))  # name NOT NULL
    internal_error(api.post(PIPELINES, {"name": api.name("t"), "temperature": 0.5}))
    error(api.post(PIPELINES, {"name": api.name("t"), "config": []}), 400, "Pipeline config must be an object")
    assert len(api.mine(ok(api.get(PIPELINES))["pipelines"])) == 3
    r = api.get(f"{PIPELINES}/{uuidlib.uuid4()}")
    assert (r.status_code, r.json()) == (404, {"code": -1, "msg": "pipeline not found"})
    for r in (api.put(f"{PIPELINES}/{uuidlib.uuid4()}", {"name": "x"}),
              api.put(f"{PIPELINES}/{uuidlib.uuid4()}", {"config": full_config("x")}),
              api.delete(f"{PIPELINES}/{uuidlib.uuid4()}")):
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
    ok(api.delete(f"{PIPELINES}/{p}"))
    assert (api.get(f"{PIPELINES}/{p}").status_code, api.delete(f"{PIPELINES}/{p}").status_code) == (404, 404)


def test_pipeline_put_config_whole_and_fragments(api: Api) -> None:
    m = api.create_model()
    p = api.create_pipeline()
    ok(api.put(f"{PIPELINES}/{p}", {"name": api.name("renamed")}))
    assert api.pipeline(p)["config"] == json.loads(FIXTURE.read_text("utf-8"))
    full = full_config(m)
    ok(api.put(f"{PIPELINES}/{p}", {"config": full}))
    assert api.pipeline(p)["config"] == full
    # A fragment: the write commits, then the pipeline fails to reload.
    internal_error(api.put(f"{PIPELINES}/{p}", {"config": {"ai": full["ai"]}}))
    assert list(api.pipeline(p)["config"]) == ["ai"]
    ok(api.put(f"{PIPELINES}/{p}", {"config": full}))  # a whole config repairs it
    # Only safety.content-filter and output.long-text-processing are needed to reload.
    lean = {k: v for k, v in full.items() if k != "trigger"}
    ok(api.put(f"{PIPELINES}/{p}", {"config": lean}))
    assert api.pipeline(p)["config"] == lean
    no_safety = {k: v for k, v in full.items() if k != "safety"}
    internal_error(api.put(f"{PIPELINES}/{p}", {"config": no_safety}))
    assert api.pipeline(p)["config"] == no_safety
    bogus = copy.deepcopy(full)
    bogus["output"]["long-text-processing"]["strategy"] = "bogus"
    strategy_error = "Long message processing strategy not found: bogus"
    error(api.put(f"{PIPELINES}/{p}", {"config": bogus}), 400, strategy_error)
    assert api.pipeline(p)["config"] == bogus  # committed
    error(api.put(f"{PIPELINES}/{p}", {"description": "d"}), 400, strategy_error)  # stuck until fixed
    ok(api.put(f"{PIPELINES}/{p}", {"config": full}))
    # Refused before any write: validation 400s, unknown or read-only columns 500s.
    before = api.pipeline(p)
    error(api.put(f"{PIPELINES}/{p}", {"config": []}), 400, "Pipeline config must be an object")
    missing = {"ai": {"runner": {"id": "plugin:a/b/c"}, "runner_config": {}}}
    error(api.put(f"{PIPELINES}/{p}", {"config": missing}), 400,
          "Pipeline runner_config is missing selected runner 'plugin:a/b/c'")
    internal_error(api.put(f"{PIPELINES}/{p}", {"temperature": 0.5}))
    internal_error(api.put(f"{PIPELINES}/{p}", {**before, "name": api.name("echo")}))  # GET object verbatim
    assert api.pipeline(p) == before
    echo = {k: v for k, v in before.items() if k not in ("created_at", "updated_at")}
    ok(api.put(f"{PIPELINES}/{p}", {**echo, "uuid": "zzz", "is_default": True, "name": api.name("echo")}))
    after = api.pipeline(p)
    assert (after["uuid"], after["is_default"], after["name"]) == (p, False, api.name("echo"))


def test_pipeline_post_with_a_fragment_commits_the_row(api: Api) -> None:
    fragment = {"ai": full_config("x")["ai"]}
    internal_error(api.post(PIPELINES, {"name": api.name("frag"), "config": fragment}))
    rows = api.mine(ok(api.get(PIPELINES))["pipelines"])
    assert [(r["name"], r["config"]) for r in rows] == [(api.name("frag"), fragment)]


def test_deleting_a_model_leaves_pipelines_dangling(langbot: Target, api: Api) -> None:
    m = api.create_model()
    keep = api.create_model("keep")
    p = api.create_pipeline(config=full_config(m))
    q = api.create_pipeline("q", config=full_config(keep))
    ok(api.delete(f"{MODELS}/{m}"))
    assert api.pipeline(p)["config"]["ai"]["runner_config"][RUNNER]["model"]["primary"] == m
    r = api.get(f"{MODELS}/{m}")
    assert (r.status_code, r.json()) == (404, {"code": -1, "msg": "model not found"})
    ok(api.put(f"{PIPELINES}/{p}", {"name": api.name("still-fine")}))  # nothing checks the reference
    if langbot.emulator is not None:
        events = [astuple(e)[2:] for e in langbot.emulator.orphan_events]  # (consumer, target)
        assert events == [(p, m)]
        assert q in langbot.emulator.pipelines()


# --- the model test ------------------------------------------------------------------------

class _Upstream(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        if "/fail/" in self.path:
            status, out = 401, {"error": {"message": "bad key", "type": "invalid_request_error"}}
        else:
            status, out = 200, {"id": "c1", "object": "chat.completion", "created": 1, "model": body.get("model"),
                                "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": "Hello"}}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


@pytest.fixture
def upstream() -> Iterator[tuple[str, list]]:
    """A fake OpenAI chat-completions server on loopback that records what it got;
    paths with /fail/ answer 401."""
    seen: list = []
    server = _UpstreamServer(("127.0.0.1", 0), type("Upstream", (_Upstream,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_model_test_calls_the_upstream(api: Api, upstream: tuple[str, list]) -> None:
    base, seen = upstream
    name = api.name("up-model")
    m = api.create_model(name=name, provider=api.inline(["kA", "kB"], base_url=f"{base}/{api.token}/v1"),
                         extra_args={"temperature": 0.7, "max_tokens": 64})
    assert seen == []  # creating a model does not contact the provider
    assert ok(api.post(f"{MODELS}/{m}/test", {})) is None
    assert ok(api.post(f"{MODELS}/{m}/test", {"extra_args": {"temperature": 0.1}})) is None
    hello = [{"role": "user", "content": 'Hello, world! Please just reply a "Hello".'}]
    assert [(p, a) for p, a, _ in seen] == [(f"/{api.token}/v1/chat/completions", "Bearer kA")] * 2
    for body, temperature in zip([b for *_, b in seen], (0.7, 0.1)):
        assert (body["model"], body["messages"], body["temperature"], body["max_tokens"]) == (
            name, hello, temperature, 64)
    unsaved = {"name": api.name("unsaved"), "provider": api.inline(["kX"], base_url=f"{base}/{api.token}/v1")}
    assert ok(api.post(f"{MODELS}/_/test", unsaved)) is None
    assert seen[-1][1:] == ("Bearer kX", {"model": api.name("unsaved"), "messages": hello})
    assert not [p for p in api.my_providers() if p["api_keys"] == ["kX"]]  # an unsaved test saves nothing
    failing = api.create_model("f", provider=api.inline(["kA"], base_url=f"{base}/{api.token}/fail/v1"))
    error(api.post(f"{MODELS}/{failing}/test", {}), 400, "Model request failed: Invalid API key",
          code="model_test_failed")
    closed = api.create_model("c", provider=api.inline(["kA"], base_url=f"http://127.0.0.1:9/{api.token}/v1"))
    error(api.post(f"{MODELS}/{closed}/test", {}), 400, "Model request failed: Unknown error",
          code="model_test_failed")


# --- the emulator alone: seeds, snapshots, faults ---------------------------------------------

def test_emulator_demo_seed_and_snapshots() -> None:
    with LangBotEmulator(seed=langbot_demo_seed()) as emu:
        models, providers, pipelines = emu.models(), emu.providers(), emu.pipelines()
        assert len(models) == 3 and len(pipelines) == 4
        assert len(providers) == 4 and BUILTIN in providers  # the two vllm keys: two providers
        on = {p["name"]: p["config"]["ai"]["runner_config"][RUNNER]["model"]["primary"]
              for p in pipelines.values()}
        by_name = {m["name"]: uuid for uuid, m in models.items()}
        assert on["Trickster Pell"] == by_name["mistralai/Mixtral-8x7B-Instruct-v0.1"]
        template = json.loads(FIXTURE.read_text("utf-8"))
        for p in pipelines.values():
            assert {k: v for k, v in p["config"].items() if k != "ai"} == {
                k: v for k, v in template.items() if k != "ai"}
        models[next(iter(models))]["name"] = "changed"  # snapshots are copies
        assert "changed" not in [m["name"] for m in emu.models().values()]
        with httpx.Client(base_url=emu.url, headers={"X-API-Key": "emulator-key"}, verify=False) as http:
            listed = ok(http.get(PIPELINES))["pipelines"]
            assert {p["uuid"] for p in listed} == set(pipelines)
            ok(http.delete(f"{MODELS}/{by_name['mistralai/Mixtral-8x7B-Instruct-v0.1']}"))
        pell = [u for u, p in pipelines.items() if p["name"] == "Trickster Pell"]
        assert [astuple(e)[2:] for e in emu.orphan_events] == [
            (pell[0], by_name["mistralai/Mixtral-8x7B-Instruct-v0.1"])]


def test_emulator_seed_format() -> None:
    seed = {"models": [{"name": "gpt-4o", "base_url": "https://a.example/v1", "api_keys": ["k"],
                        "uuid": "11111111-1111-4111-8111-111111111111", "extra_args": {"temperature": 0.1}},
                       {"name": "gpt-4o-mini", "base_url": "https://a.example/v1", "api_keys": "k"}],
            "pipelines": [{"name": "A", "model": "gpt-4o-mini", "prompt": "Be A."},
                          {"name": "B", "model": "11111111-1111-4111-8111-111111111111"},
                          {"name": "C", "model": "22222222-2222-4222-8222-222222222222"}]}  # dangling
    emu = LangBotEmulator(seed=seed)
    models, pipelines = emu.models(), emu.pipelines()
    assert len({m["provider_uuid"] for m in models.values()}) == 1  # find-or-create, as the server
    primaries = {p["name"]: p["config"]["ai"]["runner_config"][RUNNER] for p in pipelines.values()}
    mini = [u for u, m in models.items() if m["name"] == "gpt-4o-mini"][0]
    assert primaries["A"]["model"]["primary"] == mini
    assert primaries["A"]["prompt"] == [{"role": "system", "content": "Be A."}]
    assert primaries["B"]["model"]["primary"] == "11111111-1111-4111-8111-111111111111"
    assert primaries["C"]["model"]["primary"] == "22222222-2222-4222-8222-222222222222"
    for bad in ({"models": [{"name": "x"}]}, {"pipelines": [{"name": "P", "model": "nobody"}]},
                {"models": [], "extra": 1}, {"models": [{"name": "x", "base_url": "u", "api_keys": [1]}]}):
        with pytest.raises(ConvaiSyncError):
            LangBotEmulator(seed=bad)


def test_emulator_fault_replies_use_the_langbot_envelope() -> None:
    with LangBotEmulator(faults=Faults(rate=1.0, seed=3)) as emu:
        with httpx.Client(base_url=emu.url, headers={"X-API-Key": "emulator-key"}, timeout=5, verify=False) as http:
            seen = set()
            for _ in range(30):
                try:
                    r = http.get(MODELS)
                except httpx.HTTPError:
                    seen.add("drop")
                    continue
                seen.add(r.status_code)
                body = r.json()
                assert set(body) >= {"code", "msg"} and body["code"] != 0
                if r.status_code == 500:
                    assert body["code"] == "internal_error" and r.headers["X-Request-Id"] == body["request_id"]
            assert {429, 500, 502, 503} <= seen
