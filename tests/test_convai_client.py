"""The Convai client (convai_sync/providers/convai/client.py) through its public
methods, over real HTTP against the built-in emulator: what each call sends, what
it reads back, how it words its errors, and how it confirms a write whose reply
was lost (or that failed before landing) from live state.

Fast and focused: this is the test file bench/mutation.py runs for the client,
so every test asserts exact bodies, values and messages. The emulator's own
switches make the unusual replies (lean character reads, errors inside a 200,
lost replies); FlakyEmulator adds a 503 that is sent before anything is done,
so the client cannot tell it from a lost reply and must look."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from conftest import ACCOUNT_KEY
from convai_sync.emulator import Emulator, Faults, Quirks
from convai_sync.emulator.base import Reply, Request
from convai_sync.errors import ApiError, ConvaiSyncError
from convai_sync.model import ConsumerState, ModelState
from convai_sync.plan import Action, Change, Phase, Resource
from convai_sync.providers.convai import ConvaiClient
from convai_sync.providers.convai.dialects import CUSTOM_LLM, LLM_MODELS
from convai_sync.retry import RetryPolicy
from convai_sync.secrets import Secret

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.004, max_total=2)
HIDDEN = "(sensitive)"  # how the emulator's request log shows a key
ALPHA = {"model_group_name": "alpha", "model_name": "gpt-4o-mini", "base_url": "https://alpha.example/v1",
         "display_name": "Alpha", "is_uncensored": False, "api_key": "sk-alpha-old-0001"}
BETA = {"model_group_name": "beta", "model_name": "llama-3-70b", "base_url": "https://beta.example/v1",
        "display_name": "Beta", "is_uncensored": True, "api_key": "sk-beta-old-0002"}
SEED = {"models": [ALPHA, BETA], "characters": [
    {"character_id": "c1", "character_name": "Ann", "model_group_name": "alpha", "temperature": 0.4},
    {"character_id": "c2", "character_name": "Bob", "model_group_name": "beta", "temperature": 0.7}]}
ANN = ConsumerState("c1", "alpha", {"temperature": 0.4}, "Ann")
BOB = ConsumerState("c2", "beta", {"temperature": 0.7}, "Bob")
LOSE_EVERY_REPLY = Faults(after_commit=1.0, seed=3)


class FlakyEmulator(Emulator):
    """The emulator, plus: the next `failures[path]` requests to a path get a 503
    before anything is done (nothing lands), and `peak` is the most requests it
    has had in flight at once."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.failures: dict[str, int] = {}
        self.peak = 0

    def handle(self, request: Request) -> Reply:
        self.peak = max(self.peak, self._inflight)  # under the base's lock
        if self.failures.get(request.path, 0) > 0:
            self.failures[request.path] -= 1
            return Reply(503, {"status": "error", "message": "flaky"})
        return super().handle(request)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def bodies(self, path: str) -> list[dict | None]:
        return [r.body for r in self.requests if r.path == path]


@pytest.fixture
def emulator(serve: Callable[[Any], Any]) -> Callable[..., FlakyEmulator]:
    def make(dialect: str = "llm-models", seed: dict | None = None, **kw: Any) -> FlakyEmulator:
        return serve(FlakyEmulator(dialect=dialect, account_key=ACCOUNT_KEY,
                                   seed=SEED if seed is None else seed, **kw))
    return make


def client_for(emu: Emulator, dialect: str | None = "llm-models", **kw: Any) -> ConvaiClient:
    client = ConvaiClient(emu.url, kw.pop("key", ACCOUNT_KEY), retry=kw.pop("retry", FAST), **kw)
    if dialect is not None:
        client.detect_dialect(dialect)
    return client


def error_of(call: Callable[..., Any], *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args)
    return info.value


def model_change(action: str, name: str, after: dict | None, fields: tuple[str, ...] = ()) -> Change:
    return Change(Resource.MODEL, name, Action(action), Phase.UPDATE, None, after, fields)


# --- setting up ---------------------------------------------------------------------------

def test_the_defaults_and_the_settings_given_reach_the_session(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with ConvaiClient(emu.url, ACCOUNT_KEY) as client:
        assert (client.limit.maximum, client.http.timeout, client.http.retry) == (8, 30.0, RetryPolicy())
        assert client.dialect is None and client.base_url == emu.url
    with ConvaiClient(emu.url + "/", ACCOUNT_KEY, parallelism=3, retry=FAST, timeout=4.5, extra=1) as client:
        assert (client.limit.maximum, client.http.timeout, client.http.retry) == (3, 4.5, FAST)
        assert client.base_url == emu.url


def test_a_bad_url_or_key_is_refused_naming_the_convai_settings() -> None:
    with pytest.raises(ConvaiSyncError) as info:
        ConvaiClient("ftp://models.example", ACCOUNT_KEY)
    assert str(info.value) == ("API URL 'ftp://models.example' is not an http(s) URL; set CONVAI_API_URL "
                               "or --api-url to e.g. https://api.convai.com")
    with pytest.raises(ConvaiSyncError) as info:
        ConvaiClient("http://127.0.0.1:9", "")
    assert str(info.value) == "no account key: set CONVAI_API_KEY to your Convai API key"


def test_the_account_key_goes_in_its_header_and_a_refused_one_says_which_variable(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu, None, key="not-the-account-key") as client:
        e = error_of(client.detect_dialect, "auto")
    assert str(e) == ("POST /llm-models/list (model list) failed: HTTP 401: Unauthorized: missing or "
                      "invalid CONVAI-API-KEY\n  the account key was refused: set CONVAI_API_KEY to a "
                      "valid Convai API key")
    assert emu.paths() == ["/llm-models/list"]  # a refused key is not a missing dialect


def test_a_reply_that_is_not_json_names_the_url_variable(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/character/list", raw=b"<html>hello</html>")
    with client_for(emu) as client:
        e = error_of(client.list_characters)
    assert str(e) == ("POST /character/list (character list) failed: HTTP 200: the reply is not JSON\n"
                      "  is CONVAI_API_URL pointing at the Convai API?")


def test_a_rate_limit_that_never_ends_gives_the_rate_limit_hint(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/character/list", {"status": "error", "message": "slow down"}, status=429)
    with client_for(emu, retry=RetryPolicy(2, 0.001, 0.002, 2)) as client:
        e = error_of(client.list_characters)
    assert e.status == 429 and e.api_message.startswith("slow down (gave up after 2 attempts")
    assert str(e).endswith("\n  the API kept rate-limiting; wait a little and run again, or lower "
                           "--parallelism")


# --- error bodies ---------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ({"message": "m-first", "ERROR": "not this"}, "m-first"),
    ({"message": 5, "ERROR": "e-second"}, "e-second"),
    ({"API_ERROR": "a-third", "error": "not this"}, "a-third"),
    ({"error": "x-fourth", "detail": "not this"}, "x-fourth"),
    ({"detail": "d-fifth"}, "d-fifth"),
    ({"other": "o"}, '{"other": "o"}'),  # no message: the reply's text
    (["listed"], '["listed"]'),
])
def test_the_message_of_an_error_body(emulator: Callable[..., FlakyEmulator], body: Any, message: str) -> None:
    emu = emulator()
    emu.override("/character/get", body, status=400)
    with client_for(emu) as client:
        e = error_of(client.get_character, "c1")
    assert str(e) == f"POST /character/get (character 'c1') failed: HTTP 400: {message}"


@pytest.mark.parametrize("body,message", [
    ({"status": "Error", "message": "quota"}, "quota"),
    ({"STATUS": "ERROR", "detail": "upper-case status"}, "upper-case status"),
    ({"status": "error"}, "error"),  # no message in it: the word
    ({"ERROR": "Could not fetch"}, "Could not fetch"),
    ({"API_ERROR": "Invalid API key provided."}, "Invalid API key provided."),
    ({"ERROR": None, "STATUS": "SUCCESS"}, "error"),
])
def test_a_refusal_inside_a_200_is_an_error(emulator: Callable[..., FlakyEmulator], body: dict,
                                           message: str) -> None:
    emu = emulator()
    emu.override("/character/update", body)
    with client_for(emu) as client:
        e = error_of(client.update_character, "c1", {"temperature": 0.5})
    assert str(e) == (f"POST /character/update (character 'c1') failed: HTTP 200: {message} "
                      "(inside an HTTP 200 reply)")


@pytest.mark.parametrize("body", [{"status": "success", "STATUS": "error"}, {"status": 200},
                                  {"STATUS": "SUCCESS"}])
def test_a_200_that_does_not_say_error_is_a_success(emulator: Callable[..., FlakyEmulator], body: dict) -> None:
    emu = emulator()
    emu.override("/character/get", body)
    with client_for(emu) as client:
        assert client.get_character("c1") == body


def test_a_list_reply_that_says_error_is_refused_as_a_list_with_nothing_written(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/llm-models/list", {"status": "error", "message": "db down", "models": []})
    with client_for(emu, None) as client:
        e = error_of(client.detect_dialect, "llm-models")
    assert str(e).startswith("POST /llm-models/list (model list) failed: HTTP 200: the reply says the "
                             "call failed (status 'error': 'db down'), though its HTTP status is 200\n")


# --- dialects -------------------------------------------------------------------------------

def test_auto_finds_llm_models_with_one_read(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu, None) as client:
        dialect, models = client.detect_dialect("auto")
        assert dialect is LLM_MODELS and client.dialect is LLM_MODELS
        assert [m["model_group_name"] for m in models] == ["alpha", "beta"]
        assert client.capabilities().variant == "llm-models"
    assert emu.paths() == ["/llm-models/list"]
    assert emu.bodies("/llm-models/list") == [{}]  # every call is a POST with a JSON body


def test_auto_falls_back_to_custom_llm_on_a_404(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator("custom-llm")
    with client_for(emu, None) as client:
        dialect, models = client.detect_dialect("auto")
        assert dialect is CUSTOM_LLM and client.dialect is CUSTOM_LLM
        assert models == [{k: m[k] for k in ("model_group_name", "model_name", "base_url")}
                          for m in (ALPHA, BETA)]
        caps = client.capabilities()
        assert (caps.variant, caps.updatable) == ("custom-llm", CUSTOM_LLM.updatable)
    assert emu.paths() == ["/llm-models/list", "/custom-llm/list"]


def test_a_named_dialect_is_read_directly(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator("custom-llm")
    with client_for(emu, None) as client:
        assert client.detect_dialect("custom-llm")[0] is CUSTOM_LLM
    assert emu.paths() == ["/custom-llm/list"]


def test_neither_dialect_answering_names_both_calls_and_the_url(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/llm-models/list", {"message": "no such route"}, status=404)
    emu.override("/custom-llm/list", {"message": "no route either"}, status=404)
    with client_for(emu, None) as client:
        e = error_of(client.detect_dialect, "auto")
    assert str(e) == ("POST /llm-models/list and /custom-llm/list failed: HTTP 404: no route either\n"
                      "  neither Custom LLM API answers here; check CONVAI_API_URL / --api-url")
    assert (e.status, e.obj, e.__cause__, e.__suppress_context__) == (404, None, None, True)


def test_another_failure_of_the_second_dialect_is_its_own(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator("custom-llm")
    emu.override("/custom-llm/list", {"message": "bad request"}, status=400)
    with client_for(emu, None) as client:
        e = error_of(client.detect_dialect, "auto")
    assert str(e) == "POST /custom-llm/list (model list) failed: HTTP 400: bad request"
    assert client.dialect is None


def test_a_model_write_before_any_dialect_is_a_bug_not_a_request(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu, None) as client:
        for write in (lambda: client.deregister_model("alpha"), client.capabilities):
            with pytest.raises(RuntimeError, match=r"^detect_dialect\(\) must run before model writes$"):
                write()
    assert emu.requests == []


@pytest.mark.parametrize("item,message", [
    ({"model_group_name": 5}, "item 0 has no model_group_name string (got 5)"),
    ({"model_group_name": "m", "model_name": 1}, "item 0 ('m') has a model_name that is not text (int)"),
    ({"model_group_name": "m", "base_url": []}, "item 0 ('m') has a base_url that is not text (list)"),
    ({"model_group_name": "m", "display_name": {}}, "item 0 ('m') has a display_name that is not text (dict)"),
])
def test_a_malformed_model_list_is_refused(emulator: Callable[..., FlakyEmulator], item: dict,
                                          message: str) -> None:
    emu = emulator()
    emu.override("/llm-models/list", {"status": "success", "models": [item]})
    with client_for(emu, None) as client:
        e = error_of(client.detect_dialect, "llm-models")
    assert str(e).startswith(f"POST /llm-models/list (model list) failed: HTTP 200: {message}\n")


def test_a_model_list_without_its_models_key_is_refused(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/llm-models/list", {"status": "success", "items": []})
    with client_for(emu, None) as client:
        e = error_of(client.detect_dialect, "llm-models")
    assert str(e) == ("POST /llm-models/list (model list) failed: HTTP 200: unexpected reply shape "
                      "(no 'models' list)\n  the API may have changed; nothing was written. Please report this")


# --- reading the account ----------------------------------------------------------------------

def test_read_state_reads_every_field_and_counts_its_own_requests(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu, None) as client:
        assert client.ping("llm-models") == "2 custom model(s), llm-models dialect"
        live = client.read_state("llm-models")
    assert live.dialect == "llm-models" and live.requests == 2
    assert live.models == {
        "alpha": ModelState("alpha", {"model_name": "gpt-4o-mini", "base_url": "https://alpha.example/v1",
                                      "display_name": "Alpha", "is_uncensored": False}),
        "beta": ModelState("beta", {"model_name": "llama-3-70b", "base_url": "https://beta.example/v1",
                                    "display_name": "Beta", "is_uncensored": True})}
    assert live.consumers == {"c1": ANN, "c2": BOB}


def test_read_state_and_ping_detect_the_dialect_by_default(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator("custom-llm")
    with client_for(emu, None) as client:
        assert client.ping() == "2 custom model(s), custom-llm dialect"
        live = client.read_state()
    assert live.dialect == "custom-llm" and live.requests == 3  # two dialect probes, characters
    assert live.models["beta"].fields == {"model_name": "llama-3-70b", "base_url": "https://beta.example/v1",
                                          "display_name": None, "is_uncensored": None}


def test_a_model_flag_that_is_not_a_boolean_is_unknown(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/llm-models/list", {"status": "success", "models": [
        {"model_group_name": "m", "is_uncensored": "yes"}, {"model_group_name": "n", "is_uncensored": True}]})
    with client_for(emu, None) as client:
        models = client.read_state("llm-models").models
    assert models["m"].fields == {"model_name": None, "base_url": None, "display_name": None,
                                  "is_uncensored": None}
    assert models["n"].fields["is_uncensored"] is True


def test_characters_listed_with_their_models_need_no_more_reads(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        emu.clear_log()
        assert client.list_characters() == {"c1": ANN, "c2": BOB}
    assert emu.paths() == ["/character/list"] and emu.bodies("/character/list") == [{}]


def test_characters_listed_without_their_models_are_each_read(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator(character_list_config=False)
    with client_for(emu) as client:
        emu.clear_log()
        assert client.list_characters() == {"c1": ANN, "c2": BOB}
    assert sorted(b["charID"] for b in emu.bodies("/character/get")) == ["c1", "c2"]


def test_characters_nobody_says_the_model_of_are_refused(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator(character_list_config=False, character_get_config=False)
    with client_for(emu) as client:
        e = error_of(client.list_characters)
    assert str(e) == ("POST /character/get (character 'c1') failed: HTTP 200: neither /character/list "
                      "nor /character/get returned the model of 2 character(s)\n  the API may have "
                      "changed; nothing was written. Please report this")


def test_the_lean_reads_run_concurrently_up_to_the_parallelism(emulator: Callable[..., FlakyEmulator]) -> None:
    many = [{"character_id": f"k{i}", "character_name": f"K{i}", "model_group_name": "alpha",
             "temperature": 0.5} for i in range(12)]
    emu = emulator(seed={"models": [ALPHA], "characters": many}, character_list_config=False,
                   faults=Faults(latency_ms=45))
    with client_for(emu, parallelism=12) as client:
        assert len(client.list_characters()) == 12
    assert emu.peak >= 9  # a default thread pool has min(32, CPUs + 4) workers: 6 on 2 CPUs


@pytest.mark.parametrize("raw,state", [
    ({"charID": "x", "character_name": "X", "model_group_name": "m", "temperature": 0.3},
     ConsumerState("x", "m", {"temperature": 0.3}, "X")),
    ({"character_id": "x", "model_group_name": "flat", "temperature": 0.1,
      "personalised_prompt_config": {"MODEL": "nested", "TEMPERATURE": 0.9}},
     ConsumerState("x", "nested", {"temperature": 0.9}, None)),
    ({"character_id": "x", "model_group_name": "flat", "temperature": 1,
      "personalised_prompt_config": "not an object"},
     ConsumerState("x", "flat", {"temperature": 1.0}, None)),
    ({"character_id": "x", "model_group_name": "m", "temperature": True},
     ConsumerState("x", "m", {"temperature": None}, None)),
    ({"character_id": "x", "model_group_name": "m", "temperature": "0.5"},
     ConsumerState("x", "m", {"temperature": None}, None)),
])
def test_how_a_listed_character_is_read(emulator: Callable[..., FlakyEmulator], raw: dict,
                                        state: ConsumerState) -> None:
    emu = emulator()
    emu.override("/character/list", {"characters": [raw]})
    with client_for(emu) as client:
        got = client.list_characters()
    assert got == {"x": state}
    assert type(got["x"].fields["temperature"]) is type(state.fields["temperature"])


@pytest.mark.parametrize("get,name", [
    ({"character_id": "c1", "personalised_prompt_config": {"MODEL": "beta", "TEMPERATURE": 0.2}}, "Ann"),
    ({"character_id": "c1", "character_name": "Anna", "model_group_name": "beta", "temperature": 0.2}, "Anna"),
    ({"character_id": "c1", "character_name": 7, "model_group_name": "beta", "temperature": 0.2}, "Ann"),
    ({"character_id": None, "charID": "c1", "model_group_name": "beta", "temperature": 0.2}, "Ann"),
])
def test_a_character_read_alone_keeps_the_listed_name_unless_it_has_its_own(
        emulator: Callable[..., FlakyEmulator], get: dict, name: str) -> None:
    emu = emulator(seed={"models": [ALPHA, BETA], "characters": SEED["characters"][:1]},
                   character_list_config=False)
    emu.override("/character/get", get)
    with client_for(emu) as client:
        assert client.list_characters() == {"c1": ConsumerState("c1", "beta", {"temperature": 0.2}, name)}


@pytest.mark.parametrize("get", [{"character_id": 5, "model_group_name": "beta"}, ["c1"]])
def test_a_character_read_that_is_not_a_character_leaves_it_unknown(
        emulator: Callable[..., FlakyEmulator], get: Any) -> None:
    emu = emulator(seed={"models": [ALPHA], "characters": SEED["characters"][:1]},
                   character_list_config=False)
    emu.override("/character/get", get)
    with client_for(emu) as client:
        e = error_of(client.list_characters)
    assert e.api_message == ("neither /character/list nor /character/get returned the model of "
                             "1 character(s)")


def test_a_listed_model_that_is_not_text_is_read_alone(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/character/list", {"characters": [
        {"character_id": "c1", "character_name": "Ann", "personalised_prompt_config": {"MODEL": 5}}]})
    with client_for(emu) as client:
        assert client.list_characters() == {"c1": ANN}
    assert emu.bodies("/character/get") == [{"charID": "c1"}]


@pytest.mark.parametrize("reply,message", [
    ({"characters": [{"name": "nobody"}]}, "item 0 has no character_id or charID string (got None)"),
    ({"characters": [{"character_id": "c1", "character_name": 5}]},
     "item 0 ('c1') has a character_name that is not text (int)"),
    ({"characters": [{"charID": "c1", "model_group_name": 5}]},
     "item 0 ('c1') has a model_group_name that is not text (int)"),
    ({"items": []}, "unexpected reply shape (no 'characters' list)"),
])
def test_a_malformed_character_list_is_refused(emulator: Callable[..., FlakyEmulator], reply: dict,
                                              message: str) -> None:
    emu = emulator()
    emu.override("/character/list", reply)
    with client_for(emu) as client:
        e = error_of(client.list_characters)
    assert str(e).startswith(f"POST /character/list (character list) failed: HTTP 200: {message}\n")


def test_a_failed_character_list_names_the_call(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.override("/character/list", {"ERROR": "account suspended"}, status=403)
    with client_for(emu) as client:
        e = error_of(client.list_characters)
    assert str(e) == "POST /character/list (character list) failed: HTTP 403: account suspended"


def test_get_character_returns_the_reply_and_names_the_character_it_failed_on(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        got = client.get_character("c2")
        e = error_of(client.get_character, "nobody")
    assert got["character_id"] == "c2" and got["personalised_prompt_config"]["MODEL"] == "beta"
    assert str(e) == ("POST /character/get (character 'nobody') failed: HTTP 400: Could not fetch "
                      "character details for nobody")


# --- model writes -----------------------------------------------------------------------------

NEW = {"model_name": "gpt-4o", "base_url": "https://new.example/v1", "display_name": "New"}


def test_register_sends_the_registrable_fields_the_key_and_a_censorship_flag(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        client.register_model("new", {**NEW, "temperature": 0.3}, Secret("sk-new-key-0101", "K"))
        client.register_model("wild", {**NEW, "display_name": "Wild", "is_uncensored": True},
                              Secret("sk-new-key-0102", "K"))
    assert emu.bodies("/llm-models/register") == [
        {"model_group_name": "new", **NEW, "api_key": HIDDEN, "is_uncensored": False},
        {"model_group_name": "wild", **NEW, "display_name": "Wild", "is_uncensored": True, "api_key": HIDDEN}]
    assert (emu.models()["new"]["api_key"], emu.models()["new"]["is_uncensored"]) == ("sk-new-key-0101", False)
    assert emu.models()["wild"]["is_uncensored"] is True


def test_register_in_custom_llm_sends_only_what_that_dialect_takes(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator("custom-llm")
    with client_for(emu, "custom-llm") as client:
        client.register_model("new", NEW, Secret("sk-new-key-0103", "K"))
    assert emu.bodies("/custom-llm/register") == [
        {"model_group_name": "new", "model_name": "gpt-4o", "base_url": "https://new.example/v1", "api_key": HIDDEN}]
    assert emu.models()["new"]["api_key"] == "sk-new-key-0103"


def test_a_refused_model_write_names_the_model(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        taken = error_of(client.register_model, "alpha", NEW, Secret("sk-new-key-0104", "K"))
        missing = error_of(client.update_model, "ghost", {"display_name": "Ghost"})
        gone = error_of(client.deregister_model, "ghost")
    assert str(taken) == "POST /llm-models/register (model 'alpha') failed: HTTP 409: model_group_name already exists"
    assert str(missing) == "POST /llm-models/update (model 'ghost') failed: HTTP 404: Model 'ghost' not found"
    assert str(gone) == "POST /llm-models/deregister (model 'ghost') failed: HTTP 404: Model 'ghost' not found"


def test_update_sends_the_fields_and_only_a_given_key(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        client.update_model("alpha", {"display_name": "Renamed"})
        client.update_model("beta", {"base_url": "https://b2.example/v1"}, Secret("sk-rotated-0105", "K"))
    assert emu.bodies("/llm-models/update") == [
        {"model_group_name": "alpha", "display_name": "Renamed"},
        {"model_group_name": "beta", "base_url": "https://b2.example/v1", "api_key": HIDDEN}]
    models = emu.models()
    assert (models["alpha"]["display_name"], models["alpha"]["api_key"]) == ("Renamed", ALPHA["api_key"])
    assert (models["beta"]["base_url"], models["beta"]["api_key"]) == ("https://b2.example/v1", "sk-rotated-0105")


def test_deregister_sends_the_name(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        client.deregister_model("beta")
    assert emu.bodies("/llm-models/deregister") == [{"model_group_name": "beta"}]
    assert list(emu.models()) == ["alpha"]


# lost replies: the write landed, its reply did not come; one read confirms it

def test_lost_replies_of_model_writes_are_confirmed_not_repeated(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator(faults=LOSE_EVERY_REPLY)
    with client_for(emu) as client:
        client.register_model("new", NEW, Secret("sk-new-key-0106", "K"))
        client.update_model("alpha", {"display_name": "Renamed", "base_url": "https://a2.example/v1"})
        client.deregister_model("beta")
    assert [r.path for r in emu.requests if r.committed] == [
        "/llm-models/register", "/llm-models/update", "/llm-models/deregister"]
    assert len(emu.requests) == 7  # the dialect probe, then each write and one read
    assert sorted(emu.models()) == ["alpha", "new"] and emu.models()["alpha"]["display_name"] == "Renamed"


def test_a_lost_update_is_confirmed_by_the_fields_the_dialect_can_read(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator("custom-llm", faults=LOSE_EVERY_REPLY)
    with client_for(emu, "custom-llm") as client:
        client.update_model("alpha", {"is_uncensored": True, "model_name": "gpt-4.1"})  # the flag is unreadable
    assert emu.paths() == ["/custom-llm/list", "/custom-llm/update", "/custom-llm/list"]


def test_a_key_rotation_cannot_be_read_back_so_a_lost_reply_is_repeated(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator(faults=LOSE_EVERY_REPLY)
    with client_for(emu) as client:
        e = error_of(client.update_model, "alpha", {}, Secret("sk-rotated-0107", "K"))
    assert e.call == "POST /llm-models/update" and e.obj == "model 'alpha'"
    assert "(gave up after 3 attempts" in e.api_message
    assert [r.path for r in emu.requests if r.committed] == ["/llm-models/update"] * 3
    assert "/llm-models/list" not in emu.paths()[1:]


# failed before landing: the client cannot tell; its read must say "not there"

def test_model_writes_that_did_not_land_are_sent_again(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        emu.failures = {"/llm-models/register": 1, "/llm-models/update": 1, "/llm-models/deregister": 1}
        client.register_model("new", NEW, Secret("sk-new-key-0108", "K"))
        client.update_model("alpha", {"display_name": "Renamed"})
        client.deregister_model("beta")
    assert [r.path for r in emu.requests if r.committed] == [
        "/llm-models/register", "/llm-models/update", "/llm-models/deregister"]
    assert sorted(emu.models()) == ["alpha", "new"] and emu.models()["alpha"]["display_name"] == "Renamed"


# --- the engine's interface ---------------------------------------------------------------------

def test_register_and_update_changes_send_their_fields_never_the_key_placeholder(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    after = {**NEW, "api_key": "${NEW_KEY}"}
    with client_for(emu) as client:
        client.register(model_change("register", "new", after, ("model_name", "base_url", "display_name",
                                                                 "api_key")), [Secret("sk-new-key-0109", "K")])
        client.update(model_change("update", "alpha", {**after, "display_name": "A2"}, ("display_name", "api_key")),
                      [Secret("sk-rotated-0110", "K")])
        client.update(model_change("update", "beta", {**after, "display_name": "B2"}, ("display_name", "api_key")),
                      None)
        client.update(model_change("update", "new", {**after, "display_name": "N2"}, ("display_name",)), [])
    assert emu.bodies("/llm-models/update") == [
        {"model_group_name": "alpha", "display_name": "A2", "api_key": HIDDEN},
        {"model_group_name": "beta", "display_name": "B2"},
        {"model_group_name": "new", "display_name": "N2"}]
    keys = {name: m["api_key"] for name, m in emu.models().items()}
    assert keys == {"alpha": "sk-rotated-0110", "beta": BETA["api_key"], "new": "sk-new-key-0109"}


def test_replace_deregisters_then_registers_with_the_new_key(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    change = Change(Resource.MODEL, "alpha", Action.REPLACE, Phase.REPLACE, {"model_name": "gpt-4o-mini"},
                    {**NEW, "api_key": "${NEW_KEY}"}, ("model_name",))
    with client_for(emu) as client:
        emu.clear_log()
        client.replace(change, [Secret("sk-replaced-0111", "K")])
        client.deregister(model_change("deregister", "beta", None))
    assert [p for p in emu.paths() if not p.endswith("/list")] == [
        "/llm-models/deregister", "/llm-models/register", "/llm-models/deregister"]
    assert emu.bodies("/llm-models/register") == [
        {"model_group_name": "alpha", **NEW, "api_key": HIDDEN, "is_uncensored": False}]
    assert emu.models() == {"alpha": {**emu.models()["alpha"], **NEW, "api_key": "sk-replaced-0111"}}


def test_bind_sends_only_the_changed_binding_fields(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    after = {"model_group_name": "beta", "temperature": 0.9}
    with client_for(emu) as client:
        client.bind(Change(Resource.CONSUMER, "c1", Action.UPDATE, Phase.REBIND, None, after,
                           ("model_group_name", "temperature")))
        client.bind(Change(Resource.CONSUMER, "c2", Action.UPDATE, Phase.REBIND, None, after, ("temperature",)))
        assert (client.finish(), client.memo()) == ([], {})
    assert emu.bodies("/character/update") == [
        {"charID": "c1", "model_group_name": "beta", "temperature": 0.9}, {"charID": "c2", "temperature": 0.9}]
    chars = emu.characters()
    assert [(chars[c]["model_group_name"], chars[c]["temperature"]) for c in ("c1", "c2")] == [
        ("beta", 0.9), ("beta", 0.9)]


# --- character writes ----------------------------------------------------------------------

def test_a_refused_character_update_names_the_character(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    with client_for(emu) as client:
        e = error_of(client.update_character, "c1", {"model_group_name": "ghost"})
    assert str(e) == "POST /character/update (character 'c1') failed: HTTP 400: Model 'ghost' is not available"


@pytest.mark.parametrize("fields", [{"temperature": 0.9}, {"model_group_name": "beta"},
                                    {"model_group_name": "beta", "temperature": 0.4}])
def test_a_lost_character_update_is_confirmed_by_one_read(emulator: Callable[..., FlakyEmulator],
                                                          fields: dict) -> None:
    emu = emulator(faults=LOSE_EVERY_REPLY)
    with client_for(emu) as client:
        client.update_character("c1", fields)
    assert emu.paths() == ["/llm-models/list", "/character/update", "/character/get"]
    assert {k: emu.characters()["c1"][k] for k in fields} == fields


@pytest.mark.parametrize("start,fields", [
    (0.4, {"temperature": 0.9}),
    (0.4, {"model_group_name": "beta"}),
    (0.4, {"model_group_name": "beta", "temperature": 0.4}),
    (1e-9, {"temperature": 0.0}),  # a difference of exactly the tolerance is a difference
])
def test_a_character_update_that_did_not_land_is_sent_again(emulator: Callable[..., FlakyEmulator],
                                                           start: float, fields: dict) -> None:
    seed = {"models": [ALPHA, BETA], "characters": [{**SEED["characters"][0], "temperature": start}]}
    emu = emulator(seed=seed)
    emu.failures = {"/character/update": 1}
    with client_for(emu) as client:
        client.update_character("c1", fields)
    assert [r.path for r in emu.requests if r.committed] == ["/character/update"]
    assert {k: emu.characters()["c1"][k] for k in fields} == fields


def test_a_character_the_confirming_read_cannot_make_out_is_sent_again(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator()
    emu.failures = {"/character/update": 1}
    emu.override("/character/get", {"unexpected": True})
    with client_for(emu) as client:
        client.update_character("c1", {"temperature": 0.9})
    assert [r.path for r in emu.requests if r.committed] == ["/character/update"]
    assert emu.characters()["c1"]["temperature"] == 0.9


def test_a_confirming_read_without_the_temperature_does_not_confirm_it(
        emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator(character_get_config=False, faults=LOSE_EVERY_REPLY)
    with client_for(emu) as client:
        e = error_of(client.update_character, "c1", {"temperature": 0.9})
    assert "(gave up after 3 attempts" in e.api_message
    assert [r.path for r in emu.requests if r.committed] == ["/character/update"] * 3


def test_errors_in_200_under_lag_still_confirm_a_lost_register(emulator: Callable[..., FlakyEmulator]) -> None:
    emu = emulator(seed={"models": [], "characters": []}, faults=LOSE_EVERY_REPLY,
                   quirks=Quirks(errors_in_200=True, read_lag=0.05))
    with client_for(emu) as client:
        client.register_model("quiet", NEW, Secret("sk-new-key-0112", "K"))
    assert [r.path for r in emu.requests if r.committed] == ["/llm-models/register"]
    assert emu.models()["quiet"]["model_name"] == "gpt-4o"
