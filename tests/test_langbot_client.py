"""The LangBot client through its public methods, over real HTTP against the
LangBot emulator: fast and focused (the mutation run of
providers/langbot/client uses it). End-to-end behaviour through the CLI, and the
same checks against a real LangBot server, are in test_langbot.py.

Lost replies and concurrency are made deterministic by two small emulator
subclasses below: `Lossy` loses the reply of one chosen write (before or after
it is applied), `Gate` holds each model write until a second one is in flight
(or a short wait passes) and records how many were in flight at once."""
from __future__ import annotations

import threading
import uuid as uuidlib
from typing import Any, Callable, Iterator

import pytest

from convai_sync.emulator.base import Reply, Request
from convai_sync.errors import ApiError, ConvaiSyncError
from convai_sync.plan import Change, Phase
from convai_sync.providers.base import Desired, DesiredConsumer, DesiredModel
from convai_sync.providers.langbot.client import (BUILTIN_PROVIDER, KEYS_DIFFER, LangBotClient,
                                                  model_ref, rebound)
from convai_sync.providers.langbot.emulator import LangBotEmulator
from convai_sync.retry import RetryPolicy
from convai_sync.secrets import SENSITIVE, Secret, scrub

KEY = "lb-client-test-key-7731"
GATEWAY, VLLM = "http://127.0.0.1:9/gateway/v1", "http://127.0.0.1:9/vllm/v1"
REQ = "openai-chat-completions"
MODELS = "/api/v1/provider/models/llm"
PIPELINES = "/api/v1/pipelines"
PROVIDERS = "/api/v1/provider/providers"
K_GATEWAY, K_VLLM, K_NEW = "sk-lbc-gateway-5521aa", "sk-lbc-vllm-77c0de", "sk-lbc-new-01f9e2"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005, max_total=2.0)


class Lossy(LangBotEmulator):
    """Loses one reply of a chosen write: "before" (the write never ran) or
    "after" (it was applied, then the reply was lost), as a 502."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.plan: list[tuple[str, str, str, int]] = []  # (method, path prefix, before|after, status)

    def lose(self, method: str, prefix: str, when: str, status: int = 502) -> None:
        self.plan.append((method, prefix, when, status))

    def handle(self, request: Request) -> Reply:
        for i, (method, prefix, when, status) in enumerate(self.plan):
            if request.method == method and request.path.startswith(prefix):
                del self.plan[i]
                if when == "pass":  # this one goes through: the next entry is for a later request
                    return super().handle(request)
                committed = False
                if when == "after":
                    committed = super().handle(request).committed
                return Reply(status, {"code": -1, "msg": "lost"}, committed=committed)
        return super().handle(request)


class Gate(LangBotEmulator):
    """Each POST or PUT of a model waits (outside the emulator's lock) until `target`
    have been in flight at once or `wait` seconds pass; `peak` is the most in flight."""

    wait = 0.06  # long enough for a second write to arrive when nothing holds it back
    target = 2

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.cv = threading.Condition()
        self.inflight = self.peak = 0

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> Any:
        if method not in ("POST", "PUT") or not target.startswith(MODELS):
            return super().serve(method, target, headers, raw)
        with self.cv:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.peak >= self.target, timeout=self.wait)
        try:
            return super().serve(method, target, headers, raw)
        finally:
            with self.cv:
                self.inflight -= 1


def model(name: str, base_url: str, keys: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "requester": REQ, "base_url": base_url, "api_keys": keys, **extra}


DEMO = {
    "models": [
        model("gpt-4o-mini", GATEWAY + "/", [K_GATEWAY], uuid="11111111-1111-4111-8111-111111111111",
              abilities=["func_call"], extra_args={"temperature": 0.4}, context_length=8000),
        model("llama-70b", VLLM, ["sk-lbc-old-vllm"], uuid="22222222-2222-4222-8222-222222222222"),
        model("stray", "http://127.0.0.1:9/stray/v1", ["sk-lbc-stray-9d2c41"],
              uuid="33333333-3333-4333-8333-333333333333"),
    ],
    "pipelines": [
        {"name": "Captain Mara", "model": "gpt-4o-mini", "uuid": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"},
        {"name": "Archivist Oren", "model": "llama-70b", "uuid": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"},
        {"name": "Stray Pell", "model": "stray", "uuid": "cccccccc-cccc-4ccc-8ccc-cccccccccccc"},
        {"name": "Lost Ila", "model": "44444444-4444-4444-8444-444444444444",
         "uuid": "dddddddd-dddd-4ddd-8ddd-dddddddddddd"},
    ],
}
TURBO, LLAMA, STRAY = (m["uuid"] for m in DEMO["models"])
MARA, OREN, PELL, ILA = (p["uuid"] for p in DEMO["pipelines"])


def spec(key: str, name: str, base_url: str, *, pin: str | None = None, requester: str = REQ,
         **extra: Any) -> DesiredModel:
    return DesiredModel(key, {"name": name, "requester": requester, "base_url": base_url, **extra},
                        ("LBC_KEY",), f"langbot.yaml:{len(key)}", server_id=pin)


def desired(*models: DesiredModel, keys: dict[str, list[str]] | None = None,
            consumers: tuple[DesiredConsumer, ...] = ()) -> Desired:
    d = Desired("langbot", list(models), list(consumers), variant="langbot")
    d.keys = {k: [Secret(v, "LBC_KEY") for v in vs] for k, vs in (keys or {}).items()}
    return d


def demo_desired() -> Desired:
    return desired(spec("turbo", "gpt-4o-mini", GATEWAY), spec("llama", "llama-70b", VLLM),
                   keys={"turbo": [K_GATEWAY], "llama": [K_VLLM]})


def change(action: str, key: str, after: dict[str, Any] | None = None, fields: tuple[str, ...] = (),
           resource: str = "model") -> Change:
    return Change(resource, key, action, Phase.UPDATE, None, after, fields)


def secrets(*values: str) -> list[Secret]:
    return [Secret(v, "LBC_KEY") for v in values]


@pytest.fixture
def start(serve: Callable[[Any], Any]) -> Iterator[Callable[..., tuple[Any, LangBotClient]]]:
    clients: list[LangBotClient] = []

    def make(seed: dict | None = None, cls: type = Lossy, parallelism: int = 4,
             retry: RetryPolicy = FAST, key: str = KEY, **kw: Any) -> tuple[Any, LangBotClient]:
        emu = serve(cls(api_key=KEY, seed=seed if seed is not None else DEMO))
        client = LangBotClient(emu.url, key, parallelism=parallelism, retry=retry, **kw)
        clients.append(client)
        return emu, client

    yield make
    for c in clients:
        c.close()


def fail(fn: Callable[[], Any], error: type = ApiError) -> str:
    with pytest.raises(error) as e:
        fn()
    return str(e.value)


# -- reading ---------------------------------------------------------------------------


def test_read_state_names_models_by_manifest_key_and_compares_keys(start: Callable) -> None:
    emu, client = start()
    live = client.read_state("langbot", demo_desired())
    assert (live.platform, live.dialect, live.requests) == ("langbot", "langbot", 2)
    assert set(live.models) == {"turbo", "llama", f"stray@{STRAY}"}
    assert live.models["turbo"].name == "turbo"
    assert live.models["turbo"].fields == {
        "name": "gpt-4o-mini", "requester": REQ, "base_url": GATEWAY, "abilities": ["func_call"],
        "extra_args": {"temperature": 0.4}, "context_length": 8000, "api_keys": SENSITIVE}
    assert live.models["llama"].fields["api_keys"] == KEYS_DIFFER
    assert "api_keys" not in live.models[f"stray@{STRAY}"].fields  # no desired keys: not compared
    assert {c: (s.model, s.name, s.fields) for c, s in live.consumers.items()} == {
        MARA: ("turbo", "Captain Mara", {}), OREN: ("llama", "Archivist Oren", {}),
        PELL: (f"stray@{STRAY}", "Stray Pell", {}),
        ILA: ("44444444-4444-4444-8444-444444444444", "Lost Ila", {})}
    assert live.consumers[MARA].id == MARA
    assert client.memo() == {"ids": {"llama": LLAMA, "turbo": TURBO}}
    assert list(client.memo()["ids"]) == ["llama", "turbo"]
    # every key LangBot returned in clear is known to the scrubber, managed or not
    assert "sk-lbc-stray-9d2c41" not in scrub("said sk-lbc-stray-9d2c41 and sk-lbc-old-vllm")
    assert "sk-lbc-old-vllm" not in scrub("said sk-lbc-old-vllm")


def test_read_state_without_a_manifest_names_every_model_by_name_and_uuid(start: Callable) -> None:
    emu, client = start()
    live = client.read_state("langbot")
    assert set(live.models) == {f"gpt-4o-mini@{TURBO}", f"llama-70b@{LLAMA}", f"stray@{STRAY}"}
    assert all("api_keys" not in m.fields for m in live.models.values())
    assert live.consumers[MARA].model == f"gpt-4o-mini@{TURBO}"
    assert client.memo() == {}


def test_a_model_without_a_provider_or_a_base_url_reads_as_none(start: Callable) -> None:
    emu, client = start()
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": [
        {"uuid": TURBO, "name": "gpt-4o-mini", "provider": "not an object"},
        {"uuid": LLAMA, "name": "llama-70b", "provider": {"requester": REQ, "base_url": "",
                                                          "api_keys": [K_VLLM]}},
        {"uuid": STRAY, "name": "stray", "provider": {"api_keys": "sk-lbc-one-string-6b1d"}}]}})
    live = client.read_state("langbot", demo_desired())
    assert live.models["turbo"].fields == {"name": "gpt-4o-mini", "requester": None, "base_url": None,
                                           "abilities": None, "extra_args": None, "context_length": None}
    assert live.models["llama"].fields["base_url"] is None
    assert live.models["llama"].fields["api_keys"] == SENSITIVE
    assert "sk-lbc-one-string-6b1d" not in scrub("said sk-lbc-one-string-6b1d")  # a key, not a list


def test_ping_counts_the_models(start: Callable) -> None:
    emu, client = start()
    assert client.ping() == "3 LLM model(s)"
    assert client.capabilities().platform == "langbot"


@pytest.mark.parametrize("bad", [{"code": 1, "msg": "nope", "data": {"models": []}},
                                 ["code", 0], {"msg": "ok", "data": {"models": []}}])
def test_a_reply_outside_langbots_envelope_is_refused(start: Callable, bad: Any) -> None:
    emu, client = start()
    emu.override(MODELS, bad)
    assert fail(client.ping) == (
        f"GET {MODELS} (model list) failed: HTTP 200: unexpected reply envelope: {str(bad)}\n"
        "  is LANGBOT_API_URL pointing at LangBot?")


def test_the_envelope_quoted_in_an_error_is_cut_at_200_characters(start: Callable) -> None:
    emu, client = start()
    emu.override(MODELS, {"code": 3, "pad": "x" * 400})
    assert fail(client.ping) == (f"GET {MODELS} (model list) failed: HTTP 200: unexpected reply "
                                 "envelope: " + str({"code": 3, "pad": "x" * 400})[:200] + "\n"
                                 "  is LANGBOT_API_URL pointing at LangBot?")


@pytest.mark.parametrize("data", [{"models": {}}, [], {"items": []}])
def test_a_model_list_without_its_list_is_refused(start: Callable, data: Any) -> None:
    emu, client = start()
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": data})
    assert fail(client.ping) == (
        f"GET {MODELS} (model list) failed: HTTP 200: unexpected reply shape (no 'models' list)\n"
        "  the API may have changed; nothing was written. Please report this")


def test_a_pipeline_list_without_its_list_is_refused(start: Callable) -> None:
    emu, client = start()
    emu.override(PIPELINES, {"code": 0, "msg": "ok", "data": {"models": []}})
    assert fail(lambda: client.read_state("langbot", demo_desired())).startswith(
        f"GET {PIPELINES} (pipeline list) failed: HTTP 200: unexpected reply shape (no 'pipelines' list)")


def test_a_paged_or_malformed_model_list_is_refused(start: Callable) -> None:
    emu, client = start()
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": [], "total": 3}})
    assert fail(client.ping).startswith(f"GET {MODELS} (model list) failed: HTTP 200: the reply "
                                        "says 'total': 3, but lists 0")
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": [{"name": "x"}]}})
    assert fail(client.ping).startswith(f"GET {MODELS} (model list) failed: HTTP 200: item 0 has "
                                        "no uuid string (got None)")
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": [{"uuid": "u1", "name": 5}]}})
    assert "item 0 ('u1') has a name that is not text (int)" in fail(client.ping)


@pytest.mark.parametrize("item", [{"uuid": "u-1", "name": None}, {"uuid": "u-1"},
                                  {"uuid": "u-1", "name": None, "NAME": "x", "XXnameXX": "y"}])
def test_a_model_without_a_name_is_refused(start: Callable, item: dict) -> None:
    emu, client = start()
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": [item]}})
    assert fail(client.ping) == (
        f"GET {MODELS} (model 'u-1') failed: HTTP 200: a model has a non-string uuid or name (None)\n"
        "  fix or delete that model in LangBot (its list breaks too); nothing was written")


# -- errors as LangBot words them -----------------------------------------------------


@pytest.mark.parametrize("body,said", [({"code": -1, "msg": "bad field"}, "bad field"),
                                       ({"msg": "bad field"}, "bad field"),
                                       ({"code": "E42", "msg": "bad field"}, "bad field (E42)"),
                                       ({"code": -1, "msg": 7}, '{"code": -1, "msg": 7}'),
                                       (["bad field"], '["bad field"]')])
def test_an_error_quotes_langbots_message_and_code(start: Callable, body: Any, said: str) -> None:
    emu, client = start()
    emu.override(MODELS, body, status=400)
    assert fail(client.ping) == f"GET {MODELS} (model list) failed: HTTP 400: {said}"


def test_a_refused_key_says_which_key_to_set(start: Callable) -> None:
    emu, client = start(key="lb-wrong-key-0000")
    assert fail(client.ping) == (
        f"GET {MODELS} (model list) failed: HTTP 401: Invalid authentication credentials "
        "(invalid_authentication)\n  the API key was refused: set LANGBOT_API_KEY to LangBot's "
        "global API key (api.global_api_key) or a key made in its settings")


def test_a_missing_key_or_a_bad_url_is_refused_before_any_request() -> None:
    assert fail(lambda: LangBotClient("http://127.0.0.1:9", ""), ConvaiSyncError) == \
        "no account key: set LANGBOT_API_KEY to your LangBot API key"
    assert fail(lambda: LangBotClient("ftp://x", KEY), ConvaiSyncError) == (
        "API URL 'ftp://x' is not an http(s) URL; set LANGBOT_API_URL or --api-url to e.g. "
        "http://127.0.0.1:5300")


def test_a_gone_model_says_to_plan_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.load_seed({"models": [], "pipelines": []})
    text = fail(lambda: client.update(change("update", "turbo", {"extra_args": {}}, ("extra_args",)),
                                      None))
    assert text == (f"PUT {MODELS}/{TURBO} (model 'turbo') failed: HTTP 404: Resource not found "
                    "(resource_not_found)\n  the object is gone from LangBot; run plan again")


def test_rate_limiting_gives_up_with_langbots_hint(start: Callable) -> None:
    emu, client = start()
    emu.override(MODELS, {"code": "task_capacity_exceeded", "msg": "slow down"}, status=429)
    text = fail(client.ping)
    assert text.startswith(f"GET {MODELS} (model list) failed: HTTP 429: slow down (task_capacity_exceeded)"
                           " (gave up after 4 attempts")
    assert text.endswith("\n  LangBot kept rate-limiting; wait a little and run again, or lower "
                         "--parallelism")


def test_the_timeout_is_the_clients(start: Callable) -> None:
    emu, client = start(retry=RetryPolicy(max_attempts=1, max_total=2.0), timeout=0.1)
    emu.override(MODELS, {"code": 0, "data": {"models": []}}, drip=1.0)
    text = fail(client.ping)
    assert "ReadTimeout" in text and "gave up after 1 attempts in 0s" in text


# -- matching manifest entries to live models -------------------------------------------


def test_a_pin_or_the_state_files_record_wins_over_the_name(start: Callable) -> None:
    emu, client = start()
    d = desired(spec("a", "other-name", GATEWAY, pin=LLAMA), spec("b", "gpt-4o-mini", VLLM))
    client.read_state("langbot", d, {"ids": {"b": STRAY, "a": TURBO}})
    assert client.memo() == {"ids": {"a": LLAMA, "b": STRAY}}


def test_a_stale_record_falls_back_to_the_name(start: Callable) -> None:
    emu, client = start()
    d = desired(spec("turbo", "gpt-4o-mini", GATEWAY))
    client.read_state("langbot", d, {"ids": {"turbo": "99999999-9999-4999-8999-999999999999"}})
    assert client.memo() == {"ids": {"turbo": TURBO}}


def test_a_pin_to_a_missing_or_taken_model_is_refused(start: Callable) -> None:
    emu, client = start()
    missing = "99999999-9999-4999-8999-999999999999"
    d = desired(spec("a", "gpt-4o-mini", GATEWAY, pin=missing), spec("b", "x", GATEWAY),
                spec("c", "y", VLLM, pin=LLAMA), spec("d", "z", VLLM, pin=LLAMA))
    text = fail(lambda: client.read_state("langbot", d, {"ids": {"b": LLAMA}}), ConvaiSyncError)
    assert text == (
        "cannot tell which live LangBot model is meant; nothing was written:\n"
        f"  - langbot.yaml:1: uuid {missing} is not a live model; remove the pin to adopt by name, "
        "or to register a new model\n"
        f"  - langbot.yaml:1: uuid {LLAMA} is not a live model; remove the pin to adopt by name, "
        "or to register a new model\n"
        f"  - langbot.yaml:1: uuid {LLAMA} is not a live model; remove the pin to adopt by name, "
        "or to register a new model")


TWINS = {"models": [model("gpt", GATEWAY, ["k1"], uuid="a0000000-0000-4000-8000-000000000001"),
                    model("gpt", VLLM + "/", ["k2"], uuid="a0000000-0000-4000-8000-000000000002"),
                    model("gpt", VLLM, ["k3"], uuid="a0000000-0000-4000-8000-000000000003",
                          requester="anthropic-messages"),
                    model("solo", VLLM, ["k4"], uuid="a0000000-0000-4000-8000-000000000004")],
         "pipelines": []}
TWIN1, TWIN2, TWIN3, SOLO = (m["uuid"] for m in TWINS["models"])


def test_one_of_several_same_named_models_is_adopted_by_base_url_and_requester(start: Callable) -> None:
    emu, client = start(TWINS)
    d = desired(spec("v", "gpt", VLLM), spec("g", "gpt", GATEWAY), spec("s", "solo", GATEWAY),
                spec("new", "unknown", GATEWAY))
    client.read_state("langbot", d)
    assert client.memo() == {"ids": {"g": TWIN1, "s": SOLO, "v": TWIN2}}


def test_the_last_free_same_named_model_is_adopted_whatever_its_url(start: Callable) -> None:
    emu, client = start(TWINS)
    d = desired(spec("a", "gpt", GATEWAY), spec("b", "gpt", VLLM),
                spec("c", "gpt", "http://elsewhere/v1"))
    client.read_state("langbot", d)
    assert client.memo() == {"ids": {"a": TWIN1, "b": TWIN2, "c": TWIN3}}


def test_an_ambiguous_adoption_is_refused_naming_the_uuids(start: Callable) -> None:
    emu, client = start(TWINS)
    d = desired(spec("x", "gpt", "http://elsewhere/v1"))
    text = fail(lambda: client.read_state("langbot", d), ConvaiSyncError)
    assert text == ("cannot tell which live LangBot model is meant; nothing was written:\n"
                    f"  - langbot.yaml:1: model 'x' matches 3 live models named 'gpt' ({TWIN1}, "
                    f"{TWIN2}, {TWIN3}); pin one with `uuid:` in this entry")
    seed = {"models": [model("gpt", VLLM, ["k2"]), model("gpt", VLLM, ["k3"])], "pipelines": []}
    emu2, client2 = start(seed)
    text = fail(lambda: client2.read_state("langbot", desired(spec("x", "gpt", VLLM))), ConvaiSyncError)
    assert "model 'x' matches 2 live models named 'gpt' (" in text


# -- writing models ----------------------------------------------------------------------


def test_register_sends_the_model_and_its_inline_provider(start: Callable) -> None:
    emu, client = start()
    d = desired(spec("fresh", "qwen", GATEWAY), keys={"fresh": [K_NEW]})
    client.read_state("langbot", d)
    after = {"name": "qwen", "requester": REQ, "base_url": GATEWAY, "abilities": ["vision"],
             "extra_args": {"top_p": 0.9}, "api_key_version": 2}
    client.register(change("register", "fresh", after), secrets(K_NEW, K_GATEWAY))
    assert emu.requests[-1].path == MODELS and emu.requests[-1].body == {
        "name": "qwen", "abilities": ["vision"], "extra_args": {"top_p": 0.9},
        "provider": {"requester": REQ, "base_url": GATEWAY, "api_keys": "(sensitive)"}}
    new = [m for m in emu.models().values() if m["name"] == "qwen"]
    assert len(new) == 1 and emu.providers()[new[0]["provider_uuid"]]["api_keys"] == [K_NEW, K_GATEWAY]
    assert client.memo() == {"ids": {"fresh": new[0]["uuid"]}}


def test_a_register_whose_reply_was_lost_adopts_the_unclaimed_model_it_made(start: Callable) -> None:
    emu, client = start()
    d = desired(spec("turbo", "gpt-4o-mini", GATEWAY), spec("again", "gpt-4o-mini", GATEWAY))
    client.read_state("langbot", d)  # "again" finds no free model: turbo holds the only one
    emu.load_seed({"models": [*DEMO["models"], model("gpt-4o-mini", VLLM, ["k"])], "pipelines": []})
    emu.lose("POST", MODELS, "after")
    after = {"name": "gpt-4o-mini", "requester": REQ, "base_url": GATEWAY}
    client.register(change("register", "again", after), secrets(K_GATEWAY))
    made = [u for u, m in emu.models().items() if m["name"] == "gpt-4o-mini"
            and u not in (TURBO,) and emu.providers()[m["provider_uuid"]]["base_url"] == GATEWAY]
    assert len(made) == 1  # written once, not twice
    assert client.memo() == {"ids": {"again": made[0], "turbo": TURBO}}


def test_a_register_lost_before_it_ran_is_sent_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", desired(spec("fresh", "qwen", GATEWAY)))
    emu.lose("POST", MODELS, "before")
    client.register(change("register", "fresh", {"name": "qwen", "requester": REQ,
                                                 "base_url": GATEWAY}), secrets(K_NEW))
    made = [u for u, m in emu.models().items() if m["name"] == "qwen"]
    assert len(made) == 1 and client.memo() == {"ids": {"fresh": made[0]}}


def test_update_sends_only_the_changed_model_fields(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    after = {"name": "gpt-4o", "requester": REQ, "base_url": GATEWAY, "abilities": ["vision"],
             "extra_args": {"temperature": 0.1}, "context_length": 4096}
    client.update(change("update", "turbo", after, ("name", "extra_args", "context_length")), None)
    assert emu.requests[-1].path == f"{MODELS}/{TURBO}"
    assert emu.requests[-1].body == {"name": "gpt-4o", "extra_args": {"temperature": 0.1},
                                     "context_length": 4096}
    m = emu.models()[TURBO]
    assert (m["name"], m["abilities"], m["extra_args"]) == ("gpt-4o", ["func_call"], {"temperature": 0.1})
    assert client.finish() == [] and emu.requests[-1].path == f"{MODELS}/{TURBO}"  # nothing to tidy


def test_moving_a_model_to_a_new_provider_removes_the_emptied_one(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    old = emu.models()[LLAMA]["provider_uuid"]
    after = {"name": "llama-70b", "requester": REQ, "base_url": "http://127.0.0.1:9/new/v1"}
    client.update(change("update", "llama", after, ("base_url",)), secrets(K_VLLM))
    assert emu.requests[-1].body == {"provider": {"requester": REQ, "base_url": "http://127.0.0.1:9/new/v1",
                                                  "api_keys": "(sensitive)"}}
    new = emu.providers()[emu.models()[LLAMA]["provider_uuid"]]
    assert new["base_url"] == "http://127.0.0.1:9/new/v1" and new["api_keys"] == [K_VLLM]
    assert client.finish() == ["Removed 1 LangBot provider object(s) that this apply left with no "
                               "model (LangBot keeps them, with their keys, otherwise)."]
    assert old not in emu.providers()
    assert client.finish() == []  # done once


def test_a_key_rotation_sends_the_whole_provider(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    after = {"name": "gpt-4o-mini", "requester": REQ, "base_url": GATEWAY}
    client.update(change("update", "turbo", after, ()), secrets(K_NEW))
    assert emu.providers()[emu.models()[TURBO]["provider_uuid"]]["api_keys"] == [K_NEW]
    assert emu.requests[-1].body == {"provider": {"requester": REQ, "base_url": GATEWAY,
                                                  "api_keys": "(sensitive)"}}


def test_a_provider_change_without_keys_is_an_internal_error(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    before = len(emu.requests)
    for field in ("requester", "base_url"):
        text = fail(lambda: client.update(change("update", "turbo", {"requester": REQ, "base_url": VLLM},
                                                 (field,)), None), ConvaiSyncError)
        assert text == "internal error: a provider change without its keys; please report this"
    assert len(emu.requests) == before


def test_an_update_lost_after_it_landed_is_not_sent_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.lose("PUT", f"{MODELS}/{TURBO}", "after")
    after = {"name": "gpt-4o-mini", "requester": REQ, "base_url": GATEWAY, "context_length": 999,
             "abilities": ["vision"]}
    client.update(change("update", "turbo", after, ("context_length", "abilities")), secrets(K_GATEWAY))
    assert [r.fault for r in emu.requests if r.path == f"{MODELS}/{TURBO}"] == [None]
    assert emu.models()[TURBO]["context_length"] == 999


@pytest.mark.parametrize("fields,value", [(("context_length",), 999), (("extra_args",), {"a": 1})])
def test_an_update_lost_before_it_ran_is_sent_again(start: Callable, fields: tuple, value: Any) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.lose("PUT", f"{MODELS}/{TURBO}", "before")
    after = {"name": "gpt-4o-mini", "requester": REQ, "base_url": GATEWAY, fields[0]: value}
    client.update(change("update", "turbo", after, fields), None)
    assert emu.models()[TURBO][fields[0]] == value
    assert len([r for r in emu.writes() if r.path == f"{MODELS}/{TURBO}"]) == 1


def test_a_key_rotation_lost_before_it_ran_is_sent_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.lose("PUT", f"{MODELS}/{TURBO}", "before")
    after = {"name": "gpt-4o-mini", "requester": REQ, "base_url": GATEWAY}
    client.update(change("update", "turbo", after, ("name",)), secrets(K_NEW))
    assert emu.providers()[emu.models()[TURBO]["provider_uuid"]]["api_keys"] == [K_NEW]


def test_an_update_check_that_finds_no_model_sends_it_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.lose("PUT", f"{MODELS}/{TURBO}", "before")
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": []}})  # the check sees none
    client.update(change("update", "turbo", {"context_length": 5}, ("context_length",)), None)
    assert emu.models()[TURBO]["context_length"] == 5


def test_replace_is_never_planned_for_langbot(start: Callable) -> None:
    emu, client = start()
    assert fail(lambda: client.replace(change("replace", "turbo", {}), []), ConvaiSyncError) == (
        "model 'turbo': LangBot updates every field in place; a replace should never be planned. "
        "Please report this")


def test_deregister_deletes_forgets_and_tidies_the_provider(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    old = emu.models()[LLAMA]["provider_uuid"]
    client.deregister(change("deregister", "llama"))
    assert LLAMA not in emu.models() and client.memo() == {"ids": {"turbo": TURBO}}
    assert fail(lambda: client.bind(change("update", OREN, {"model": "llama"}, resource="consumer")),
                ConvaiSyncError) == ("model 'llama': no LangBot uuid is known for it (was it "
                                     "registered by this run?); run plan again")
    assert len(client.finish()) == 1 and old not in emu.providers()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_deregister_with_a_lost_reply_deletes_once(start: Callable, when: str) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.lose("DELETE", f"{MODELS}/{LLAMA}", when)
    client.deregister(change("deregister", "llama"))
    assert set(emu.models()) == {TURBO, STRAY}
    assert len([r for r in emu.writes() if r.path == f"{MODELS}/{LLAMA}"]) == 1


def test_finish_keeps_providers_still_in_use_and_the_builtin_one(start: Callable) -> None:
    seed = {"models": [model("a", GATEWAY, ["k1"]), model("b", GATEWAY, ["k1"]),
                       {"name": "c", "requester": "space-chat-completions",
                        "base_url": "https://api.langbot.cloud/v1", "api_keys": []}], "pipelines": []}
    emu, client = start(seed)
    d = desired(spec("a", "a", GATEWAY), spec("c", "c", "https://api.langbot.cloud/v1"))
    client.read_state("langbot", d)
    providers = set(emu.providers())
    client.deregister(change("deregister", "a"))
    client.deregister(change("deregister", "c"))
    assert client.finish() == []
    assert set(emu.providers()) == providers and BUILTIN_PROVIDER in providers


def test_finish_sends_nothing_when_no_provider_was_left(start: Callable) -> None:
    emu, client = start()
    d = desired(spec("fresh", "qwen", GATEWAY))
    client.read_state("langbot", d)
    client.register(change("register", "fresh", {"name": "qwen", "requester": REQ, "base_url": GATEWAY}),
                    secrets(K_NEW))
    client.deregister(change("deregister", "fresh"))  # its provider was never read: unknown
    sent = client.requests
    assert client.finish() == [] and client.requests == sent


def test_finish_leaves_providers_that_hold_embedding_or_rerank_models(start: Callable) -> None:
    seed = {"models": [model(n, f"http://127.0.0.1:9/{n}/v1", [f"k-{n}"]) for n in "abcd"],
            "pipelines": []}
    emu, client = start(seed)
    client.read_state("langbot", desired(*[spec(n, n, f"http://127.0.0.1:9/{n}/v1") for n in "abcd"]))
    owner = {m["name"]: m["provider_uuid"] for m in emu.models().values()}
    for n in "abcd":
        client.deregister(change("deregister", n))
    listed = [{"uuid": owner["a"], "llm_count": 0, "embedding_count": 1, "rerank_count": 0},
              {"uuid": owner["b"], "llm_count": 0, "embedding_count": 0, "rerank_count": 2},
              {"uuid": owner["c"], "llm_count": 1},
              {"uuid": owner["d"], "llm_count": 0, "embedding_count": None}]
    emu.override(PROVIDERS, {"code": 0, "msg": "ok", "data": {"providers": listed}})
    emu.lose("DELETE", f"{PROVIDERS}/{owner['d']}", "after")  # landed: never sent twice
    assert client.finish() == ["Removed 1 LangBot provider object(s) that this apply left with no "
                               "model (LangBot keeps them, with their keys, otherwise)."]
    assert set(emu.providers()) - {BUILTIN_PROVIDER} == {owner["a"], owner["b"], owner["c"]}
    assert len([r for r in emu.requests if r.path == f"{PROVIDERS}/{owner['d']}"]) == 1


# -- pipelines ----------------------------------------------------------------------------


def test_bind_changes_only_the_model_reference(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    before = emu.pipelines()[OREN]["config"]
    client.bind(change("update", OREN, {"model": "turbo"}, ("model",), resource="consumer"))
    after = emu.pipelines()[OREN]["config"]
    assert model_ref(after) == TURBO
    after["ai"]["runner_config"]["plugin:langbot-team/LocalAgent/default"]["model"]["primary"] = LLAMA
    assert after == before


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_bind_with_a_lost_reply_lands_once(start: Callable, when: str) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.lose("PUT", f"{PIPELINES}/{OREN}", when)
    client.bind(change("update", OREN, {"model": "turbo"}, ("model",), resource="consumer"))
    assert model_ref(emu.pipelines()[OREN]["config"]) == TURBO
    assert len([r for r in emu.writes() if r.path == f"{PIPELINES}/{OREN}"]) == 1


def test_bind_refuses_a_pipeline_whose_runner_has_no_model(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    emu.override(f"{PIPELINES}/{OREN}", {"code": 0, "msg": "ok", "data": {"pipeline": {
        "uuid": OREN, "config": {"ai": {"runner": {"id": ""}, "runner_config": {}}}}}})
    text = fail(lambda: client.bind(change("update", OREN, {"model": "turbo"}, resource="consumer")),
                ConvaiSyncError)
    assert text == (f"pipeline '{OREN}': its runner has no model setting (config.ai.runner_config"
                    "[<runner id>].model); choose a runner with a model in LangBot first")


R = "runner-1"


@pytest.mark.parametrize("config", [
    None, [], {"ai": []}, {"ai": {"runner": "x", "runner_config": {R: {"model": {"primary": "m"}}}}},
    {"ai": {"runner": {"id": ""}, "runner_config": {"": {"model": {"primary": "m"}}}}},
    {"ai": {"runner": {"id": R}, "runner_config": [R]}},
    {"ai": {"runner": {"id": R}, "runner_config": {R: ["model"]}}},
    {"ai": {"runner": {"id": R}, "runner_config": {R: {"model": "m"}}}},
    {"ai": {"runner": {"id": R}, "runner_config": {R: {"model": {"primary": 5}}}}},
    {"ai": {"runner": {"id": R}, "runner_config": {"other": {"model": {"primary": "m"}}}}},
])
def test_model_ref_is_none_unless_the_runner_names_a_model(config: Any) -> None:
    assert model_ref(config) is None


def test_model_ref_reads_the_current_runners_primary_model() -> None:
    config = {"ai": {"runner": {"id": R}, "runner_config": {R: {"model": {"primary": "m1"}},
                                                              "other": {"model": {"primary": "m2"}}}}}
    assert model_ref(config) == "m1"


def test_rebound_sets_a_missing_primary_and_copies_the_rest() -> None:
    config = {"ai": {"runner": {"id": R}, "runner_config": {R: {"model": {"fallbacks": ["f"]}}}}, "x": [1]}
    new = rebound(config, "m9", "pipeline 'p'")
    assert new == {"ai": {"runner": {"id": R}, "runner_config": {R: {"model": {"fallbacks": ["f"],
                                                                                "primary": "m9"}}}},
                   "x": [1]}
    assert "primary" not in config["ai"]["runner_config"][R]["model"]  # the original is untouched
    assert rebound(new, "m1", "p")["ai"]["runner_config"][R]["model"]["primary"] == "m1"
    assert new["ai"]["runner_config"][R]["model"]["primary"] == "m9"


# -- concurrency ------------------------------------------------------------------------------


def run_together(*jobs: Callable[[], Any]) -> None:
    errors: list[BaseException] = []

    def wrap(job: Callable[[], Any]) -> None:
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors


def reg(client: LangBotClient, key: str, name: str, base_url: str, *keys: str) -> Callable[[], None]:
    after = {"name": name, "requester": REQ, "base_url": base_url}
    return lambda: client.register(change("register", key, after), secrets(*keys))


def test_the_first_write_for_a_new_provider_runs_alone_then_the_rest_together(start: Callable) -> None:
    emu, client = start(cls=Gate)
    client.read_state("langbot", demo_desired())
    new = "http://127.0.0.1:9/new/v1"
    run_together(reg(client, "a", "qa", new, "k1", "k2"), reg(client, "b", "qb", new + "/", "k2", "k1"))
    assert emu.peak == 1  # LangBot would make the provider twice
    emu.wait = 2.0  # ends as soon as the second write arrives
    run_together(reg(client, "c", "qc", new, "k1", "k2"), reg(client, "d", "qd", new, "k2", "k1"))
    assert emu.peak == 2
    assert len([p for p in emu.providers().values() if p["base_url"] in (new, new + "/")]) == 2


def test_writes_for_a_provider_already_read_run_together(start: Callable) -> None:
    emu, client = start(cls=Gate)
    client.read_state("langbot", demo_desired())  # GATEWAY + "/" with K_GATEWAY is live
    emu.wait = 2.0
    run_together(reg(client, "a", "qa", GATEWAY, K_GATEWAY), reg(client, "b", "qb", GATEWAY, K_GATEWAY))
    assert emu.peak == 2


def test_updates_without_a_provider_run_together(start: Callable) -> None:
    emu, client = start(cls=Gate)
    client.read_state("langbot", demo_desired())
    emu.wait = 2.0
    run_together(lambda: client.update(change("update", "turbo", {"context_length": 1}, ("context_length",)), None),
                 lambda: client.update(change("update", "llama", {"context_length": 2}, ("context_length",)), None))
    assert emu.peak == 2


@pytest.mark.parametrize("second,together", [(("qa", GATEWAY), False), (("qb", GATEWAY), True),
                                             (("qa", VLLM), True)])
def test_registers_of_one_name_and_base_url_run_one_after_the_other(
        start: Callable, second: tuple[str, str], together: bool) -> None:
    emu, client = start(cls=Gate)
    client.read_state("langbot", demo_desired())  # both providers are known
    keys = {GATEWAY: K_GATEWAY, VLLM: "sk-lbc-old-vllm"}
    emu.wait = 2.0 if together else Gate.wait
    run_together(reg(client, "a", "qa", GATEWAY, K_GATEWAY),
                 reg(client, "b", second[0], second[1], keys[second[1]]))
    assert emu.peak == (2 if together else 1)


# -- what the mutation run found untested ----------------------------------------------------


def test_every_key_langbot_returns_is_known_to_the_scrubber(start: Callable) -> None:
    # fresh values on every run: a value remembered by an earlier run in this process must not count
    listed, single = f"sk-lbc-listed-{uuidlib.uuid4().hex}", f"sk-lbc-single-{uuidlib.uuid4().hex}"
    emu, client = start()
    emu.override(MODELS, {"code": 0, "msg": "ok", "data": {"models": [
        {"uuid": TURBO, "name": "a", "provider": {"requester": REQ, "base_url": GATEWAY,
                                                  "api_keys": ["short", listed]}},
        {"uuid": LLAMA, "name": "b", "provider": {"api_keys": single}}]}})
    assert listed in scrub(listed) and single in scrub(single)  # not known before the read
    client.read_state("langbot")
    assert scrub(f"{listed} {single}") == f"{SENSITIVE} {SENSITIVE}"


def test_each_read_counts_its_own_requests(start: Callable) -> None:
    emu, client = start()
    assert client.read_state("langbot").requests == 2
    assert client.read_state("langbot").requests == 2


def test_a_pipeline_on_an_empty_model_reference_is_on_no_model(start: Callable) -> None:
    emu, client = start()
    config = emu.pipelines()[MARA]["config"]
    config["ai"]["runner_config"]["plugin:langbot-team/LocalAgent/default"]["model"]["primary"] = ""
    emu.override(PIPELINES, {"code": 0, "msg": "ok", "data": {"pipelines": [
        {"uuid": MARA, "name": "Captain Mara", "config": config}]}})
    assert client.read_state("langbot").consumers[MARA].model is None


def test_a_base_url_keeps_its_last_character_unless_it_is_a_slash(start: Callable) -> None:
    seed = {"models": [model("m", "http://127.0.0.1:9/X/", ["k"], uuid=TURBO)], "pipelines": []}
    emu, client = start(seed)
    live = client.read_state("langbot", desired(spec("m", "m", "http://127.0.0.1:9/X")))
    assert live.models["m"].fields["base_url"] == "http://127.0.0.1:9/X"


def test_a_fresh_client_needs_no_read_before_its_first_write(start: Callable) -> None:
    emu, client = start()
    assert client.memo() == {} and client.finish() == [] and client.requests == 0
    assert fail(lambda: client.update(change("update", "turbo", {"context_length": 1}, ("context_length",)),
                                      None), ConvaiSyncError).startswith("model 'turbo': no LangBot uuid")
    client.register(change("register", "fresh", {"name": "qwen", "requester": REQ, "base_url": GATEWAY}),
                    secrets(K_NEW))
    [made] = [u for u, m in emu.models().items() if m["name"] == "qwen"]
    client.update(change("update", "fresh", {"name": "qwen", "requester": REQ, "base_url": VLLM},
                         ("base_url",)), secrets(K_NEW))
    assert emu.providers()[emu.models()[made]["provider_uuid"]]["base_url"] == VLLM


def test_a_provider_change_of_a_model_made_this_run_leaves_nothing_to_tidy(start: Callable) -> None:
    emu, client = start()
    client.read_state("langbot", desired(spec("fresh", "qwen", GATEWAY)))
    client.register(change("register", "fresh", {"name": "qwen", "requester": REQ, "base_url": GATEWAY}),
                    secrets(K_NEW))
    client.update(change("update", "fresh", {"name": "qwen", "requester": REQ, "base_url": VLLM},
                         ("base_url",)), secrets(K_NEW))
    sent = client.requests
    assert client.finish() == [] and client.requests == sent


def test_the_default_client_waits_30_s_and_sends_8_at_once(serve: Callable[[Any], Any]) -> None:
    emu = serve(Gate(api_key=KEY, seed=DEMO))
    emu.target = 9
    with LangBotClient(emu.url, KEY) as client:
        assert client.http.timeout == 30.0
        client.read_state("langbot", demo_desired())
        one = change("update", "turbo", {"context_length": 7}, ("context_length",))
        run_together(*[lambda: client.update(one, None)] * 9)
    assert emu.peak == 8


def test_the_client_sends_no_more_than_its_parallelism_at_once(start: Callable) -> None:
    emu, client = start(cls=Gate, parallelism=2)
    emu.target = 3
    client.read_state("langbot", demo_desired())
    one = change("update", "turbo", {"context_length": 7}, ("context_length",))
    run_together(*[lambda: client.update(one, None)] * 3)
    assert emu.peak == 2


OTHER = "http://127.0.0.1:9/other/v1"


@pytest.mark.parametrize("requester,base_url,key", [
    ("anthropic-messages", GATEWAY, K_GATEWAY), (REQ, OTHER, K_GATEWAY), (REQ, GATEWAY, K_NEW),
    (REQ, GATEWAY + "X", K_GATEWAY)])
def test_a_provider_differing_in_any_part_is_new(start: Callable, requester: str, base_url: str,
                                                  key: str) -> None:
    emu, client = start(cls=Gate)
    client.read_state("langbot", demo_desired())  # (REQ, GATEWAY, [K_GATEWAY]) is known

    def write(name: str) -> Callable[[], None]:
        after = {"name": name, "requester": requester, "base_url": base_url}
        return lambda: client.register(change("register", name, after), secrets(key))

    run_together(write("qa"), write("qb"))
    assert emu.peak == 1


def test_first_writes_for_two_different_new_providers_run_together(start: Callable) -> None:
    emu, client = start(cls=Gate)
    emu.wait = 2.0
    client.read_state("langbot", demo_desired())
    run_together(reg(client, "a", "qa", OTHER, "k-one"), reg(client, "b", "qb", OTHER, "k-two"))
    assert emu.peak == 2


FAILED = "failed: HTTP 400: lost"


@pytest.mark.parametrize("method,path,lost_first,expected", [
    ("POST", MODELS, False, f"POST {MODELS} (model 'fresh') {FAILED}"),
    ("DELETE", f"{MODELS}/{LLAMA}", False, f"DELETE {MODELS}/{LLAMA} (model 'llama') {FAILED}"),
    ("GET", f"{PIPELINES}/{OREN}", False, f"GET {PIPELINES}/{OREN} (pipeline '{OREN}') {FAILED}"),
    ("PUT", f"{PIPELINES}/{OREN}", False, f"PUT {PIPELINES}/{OREN} (pipeline '{OREN}') {FAILED}"),
    ("GET", f"{PIPELINES}/{OREN}", True, f"GET {PIPELINES}/{OREN} (pipeline '{OREN}') {FAILED}"),
])
def test_a_refused_write_names_the_call_and_the_object(start: Callable, method: str, path: str,
                                                        lost_first: bool, expected: str) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    if lost_first:  # the bind's read passes, its PUT is lost, then the check's read is refused
        emu.lose("GET", path, "pass")
        emu.lose("PUT", path, "before")
    emu.lose(method, path, "before", status=400)
    jobs = {"POST": lambda: client.register(change("register", "fresh", {"name": "q", "requester": REQ,
                                                                          "base_url": GATEWAY}), secrets(K_NEW)),
            "DELETE": lambda: client.deregister(change("deregister", "llama"))}
    job = jobs.get(method, lambda: client.bind(change("update", OREN, {"model": "turbo"}, resource="consumer")))
    assert fail(job) == expected


@pytest.mark.parametrize("method,path,expected", [
    ("GET", PROVIDERS, f"GET {PROVIDERS} (provider list) {FAILED}"),
    ("DELETE", PROVIDERS + "/", f"DELETE {PROVIDERS}/{{p}} (provider '{{p}}') {FAILED}")])
def test_a_refused_tidy_names_the_call_and_the_provider(start: Callable, method: str, path: str,
                                                         expected: str) -> None:
    emu, client = start()
    client.read_state("langbot", demo_desired())
    p = emu.models()[LLAMA]["provider_uuid"]
    client.deregister(change("deregister", "llama"))
    emu.lose(method, path, "before", status=400)
    assert fail(client.finish) == expected.format(p=p)
