"""The Vapi client through its public methods, over real HTTP against the Vapi
emulator: fast and focused (the mutation run of providers/vapi/client uses it).
End-to-end behaviour through the CLI is in test_vapi.py.

Lost replies are made deterministic by `Lossy`, a small emulator subclass that
loses the reply of one chosen request, before or after it is applied."""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import httpx
import pytest

from convai_sync.emulator.base import Reply, Request
from convai_sync.errors import ApiError, ConvaiSyncError
from convai_sync.plan import Change, Phase
from convai_sync.providers.base import Desired, DesiredConsumer, DesiredModel
from convai_sync.providers.vapi import reads
from convai_sync.providers.vapi.client import VapiClient
from convai_sync.providers.vapi.emulator import VapiEmulator
from convai_sync.retry import RetryPolicy
from convai_sync.secrets import Secret

KEY = "vapi-client-test-key-5510"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005, max_total=2.0)
GW = "6f1d2c3b-4a5e-4f60-8a71-92b3c4d5e6f7"
VL = "7a2e3d4c-5b6f-4071-9b82-a3c4d5e6f708"
OA = "8b3f4e5d-6c70-4182-8c93-b4d5e6f70819"
MARA = "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11"
OREN = "8b1d4e7a-2c3f-4e9b-8d6a-7f0e1c2b3a45"
PELL = "c9e2a5d8-4b6f-4a1c-9e3d-2f7b8a6c5d90"
ILA = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
GW_URL, VL_URL = "https://gw.example.test/v1", "https://vllm.example.test/v1"
K_NEW = "sk-vapi-client-new-8f21c0"


def custom(url: str = GW_URL, model: str = "gpt-4o-mini", temperature: Any = 0.4, **extra: Any) -> dict:
    return {"provider": "custom-llm", "url": url, "model": model, "temperature": temperature,
            "messages": [{"role": "system", "content": "Be brief."}], **extra}


def seed() -> dict:
    return {
        "credentials": [{"id": GW, "name": "gateway", "provider": "custom-llm", "apiKey": "sk-v-gw-1"},
                        {"id": VL, "name": "vllm", "provider": "custom-llm", "apiKey": "sk-v-vl-2"},
                        {"id": OA, "name": "openai-main", "provider": "openai", "apiKey": "sk-v-oa-3"}],
        "assistants": [
            {"id": MARA, "name": "Captain Mara", "credentialIds": [GW, OA], "model": custom()},
            {"id": OREN, "name": "Archivist Oren", "model": custom(VL_URL, "llama", 0.9)},
            {"id": PELL, "name": "Trickster Pell", "credentialIds": [GW, VL], "model": custom(VL_URL, "mix", 1)},
            {"id": ILA, "name": "Guide Ila", "credentialIds": [OA],
             "model": {"provider": "openai", "model": "gpt-4o", "temperature": 0.7}},
        ]}


class Lossy(VapiEmulator):
    """Loses the reply of chosen requests: "before" (never ran) or "after" (applied, reply lost)."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.plan: list[tuple[str, str, str, int, Any]] = []

    def lose(self, method: str, path: str, when: str, status: int = 502, body: Any = None) -> None:
        self.plan.append((method, path, when, status, body))

    def handle(self, request: Request) -> Reply:
        for i, (method, path, when, status, body) in enumerate(self.plan):
            if request.method == method and request.path == path:
                del self.plan[i]
                if when == "pass":  # this one goes through: the next entry is for a later request
                    return super().handle(request)
                if when == "reply":  # applied, and answered with `body` instead
                    return Reply(200, body, committed=super().handle(request).committed)
                committed = super().handle(request).committed if when == "after" else False
                return Reply(status, {"message": "lost", "error": "Bad Gateway"}, committed=committed)
        return super().handle(request)


@pytest.fixture
def start(serve: Callable[[Any], Any]) -> Iterator[Callable[..., tuple[Lossy, VapiClient]]]:
    clients: list[VapiClient] = []

    def make(account: dict | None = None, key: str = KEY, **kw: Any) -> tuple[Lossy, VapiClient]:
        emu = serve(Lossy(api_key=KEY, seed=account if account is not None else seed()))
        client = VapiClient(emu.url, key, parallelism=4, retry=FAST, **kw)
        clients.append(client)
        return emu, client

    yield make
    for c in clients:
        c.close()


def model(name: str, url: str = GW_URL, upstream: str = "gpt-4o-mini") -> tuple[DesiredModel, dict]:
    return DesiredModel(name, {}, ("VAPI_KEY",), f"vapi.yaml:{len(name)}"), {"url": url, "model": upstream}


def desired(models: list[tuple[DesiredModel, dict]], consumers: dict[str, str] | None = None,
            prune: bool = False) -> Desired:
    return Desired("vapi", [m for m, _ in models],
                   [DesiredConsumer(aid, m, {}, "vapi.yaml:9") for aid, m in (consumers or {}).items()],
                   prune=prune, implied={m.name: implied for m, implied in models}, variant="vapi")


def change(action: str, ident: str, after: dict | None = None, fields: tuple[str, ...] = (),
           resource: str = "model", name: str | None = None) -> Change:
    return Change(resource, ident, action, Phase.UPDATE, None, after, fields, name=name)


def fail(fn: Callable[[], Any], error: type = ApiError) -> str:
    with pytest.raises(error) as e:
        fn()
    return str(e.value)


def writes(emu: VapiEmulator, path: str) -> int:
    return len([r for r in emu.writes() if r.path == path])


# -- reading ---------------------------------------------------------------------------------


def test_ping_counts_only_custom_llm_credentials(start: Callable) -> None:
    emu, client = start()
    assert client.ping() == "2 custom-llm credential(s)"
    assert client.capabilities().platform == "vapi"


def test_read_state_reads_credentials_and_custom_llm_assistants(start: Callable) -> None:
    emu, client = start()
    d = desired([model("gateway"), model("vllm", VL_URL, "llama")], {MARA: "gateway"})
    live = client.read_state("vapi", d)
    assert (live.platform, live.dialect, live.requests) == ("vapi", "vapi", 2)
    assert {n: m.fields for n, m in live.models.items()} == {"gateway": {}, "vllm": {}}
    assert {a: (c.model, c.name, c.fields) for a, c in live.consumers.items()} == {
        MARA: ("gateway", "Captain Mara", {"url": GW_URL, "model": "gpt-4o-mini", "temperature": 0.4}),
        OREN: (None, "Archivist Oren", {"url": VL_URL, "model": "llama", "temperature": 0.9}),
        PELL: ("gateway", "Trickster Pell", {"url": VL_URL, "model": "mix", "temperature": 1.0})}
    assert live.warnings == [
        f"assistants that pin several custom-llm credentials, so which one Vapi uses is undefined "
        f"(declare them in the manifest to pin exactly one): 'Trickster Pell' ({PELL}) (gateway, vllm)",
        f"assistants that run a custom LLM but pin no credential, so Vapi picks one by an "
        f"undocumented rule (declare them in the manifest to pin one): 'Archivist Oren' ({OREN})"]
    assert client.memo() == {"ids": {"gateway": GW, "vllm": VL}, "baselines": {MARA: {
        "name": "Captain Mara", "model": {"messages": [{"role": "system", "content": "Be brief."}]},
        "isServerUrlSecretSet": False}}}


def test_an_undeclared_assistant_off_the_manifests_url_or_model_is_noted(start: Callable) -> None:
    emu, client = start()
    d = desired([model("gateway", GW_URL, "other-model"), model("vllm", VL_URL, "mix")])
    live = client.read_state("vapi", d)
    assert live.warnings[-1] == (
        "assistants on a manifest credential with another url or model than the manifest's; they "
        "are not in the manifest, so they are left as they are (declare them to manage them): "
        f"'Captain Mara' ({MARA}) on 'gateway'")
    d = desired([model("gateway", GW_URL, "gpt-4o-mini")])
    assert not any("another url" in w for w in client.read_state("vapi", d).warnings)


def test_many_noted_assistants_are_cut_to_ten_names(start: Callable) -> None:
    account = seed()
    ids = [f"00000000-0000-4000-8000-0000000000{i:02d}" for i in range(12)]
    account["assistants"] = [{"id": a, "name": f"A{i:02d}", "model": custom()} for i, a in enumerate(ids)]
    emu, client = start(account)
    [warning] = client.read_state("vapi").warnings
    assert warning.endswith(f"'A03' ({ids[3]}), 'A02' ({ids[2]}) and 2 more")  # newest first
    assert warning.count("'A") == 10
    account["assistants"] = account["assistants"][:10]
    emu.load_seed(account)
    [warning] = client.read_state("vapi").warnings
    assert warning.count("'A") == 10 and "more" not in warning


def test_unnamed_credentials_are_named_by_id_and_renamed_ones_warned(start: Callable) -> None:
    account = seed()
    account["credentials"][1].pop("name")
    account["credentials"][0]["id"] = GW.upper()
    account["assistants"] = []
    emu, client = start(account)
    live = client.read_state("vapi", None, {"ids": {"gateway": "99999999-9999-4999-8999-999999999999",
                                                  VL: VL}})
    assert set(live.models) == {"gateway", VL}
    assert live.warnings == [
        f"custom-llm credential {VL} has no name; it is named by its id",
        "credential 'gateway' has a new id (99999999-9999-4999-8999-999999999999 -> "
        f"{GW}): it was deleted and created again outside convai-sync, so its key may not be "
        "the manifest's; bump api_key_version to send it again"]
    assert client.memo() == {"ids": {"gateway": GW, VL: VL}, "baselines": {}}


def test_two_credentials_of_one_name_are_refused(start: Callable) -> None:
    account = seed()
    account["credentials"][1]["name"] = "gateway"
    emu, client = start(account)
    assert fail(lambda: client.read_state("vapi")) == (
        f"GET /credential (credential 'gateway') failed: HTTP 200: two custom-llm credentials are "
        f"named 'gateway' ({VL} and {GW}); Vapi allows that, but convai-sync knows credentials by "
        "name\n  nothing was written. Rename or delete one of them in the Vapi dashboard, then run again")


def test_an_assistant_on_another_provider_pinning_a_custom_credential(start: Callable) -> None:
    account = seed()
    account["assistants"][3]["credentialIds"] = [OA, VL]
    emu, client = start(account)
    warning = (f"assistant 'Guide Ila' ({ILA}) does not run a custom LLM but pins custom-llm "
               "credential 'vllm'")
    live = client.read_state("vapi", desired([model("gateway")]))
    assert warning + "; convai-sync leaves that pin alone" in live.warnings
    assert warning + "; convai-sync leaves that pin alone" in client.read_state("vapi", desired(
        [model("gateway"), model("vllm")], prune=True)).warnings
    assert fail(lambda: client.read_state("vapi", desired([model("gateway")], prune=True)),
                ConvaiSyncError) == (
        "prune would delete credentials that assistants convai-sync does not manage still pin: "
        + warning + ". Remove those pins in the Vapi dashboard, or list the credentials in the "
        "manifest. Nothing was written")
    assert warning + "; convai-sync leaves that pin alone" in client.read_state("vapi").warnings


def test_a_declared_assistant_on_another_provider_is_refused(start: Callable) -> None:
    emu, client = start()
    assert fail(lambda: client.read_state("vapi", desired([model("gateway")], {ILA: "gateway"})),
                ConvaiSyncError) == (
        f"these assistants are in the manifest but do not run a custom LLM: 'Guide Ila' ({ILA}) "
        "runs on provider 'openai'. convai-sync manages only custom-llm assistants: switch their "
        "model to Custom LLM in the Vapi dashboard, or remove them from the manifest. Nothing was "
        "written")


def test_drift_outside_the_managed_fields_is_warned_from_the_baseline(start: Callable) -> None:
    emu, client = start()
    d = desired([model("gateway"), model("vllm", VL_URL, "mix")], {MARA: "gateway", PELL: "vllm"})
    client.read_state("vapi", d)
    memo = client.memo()
    assert set(memo["baselines"]) == {MARA, PELL}
    account = seed()
    account["assistants"][0]["model"]["messages"][0]["content"] = "Be verbose."
    account["assistants"][0]["model"]["temperature"] = 0.1  # managed: not drift
    account["assistants"][2]["firstMessage"] = "Hello"
    emu.load_seed(account)
    live = client.read_state("vapi", d, memo)
    assert live.warnings[-2:] == [
        f"assistant 'Captain Mara' ({MARA}): model.messages[0].content changed outside convai-sync; "
        "left alone",
        f"assistant 'Trickster Pell' ({PELL}): firstMessage added outside convai-sync; left alone"]
    # without a manifest, the assistants the last baseline covered are compared
    live = client.read_state("vapi", None, {"baselines": {MARA: memo["baselines"][MARA]}})
    assert [w for w in live.warnings if "outside" in w] == [live.warnings[-1]] and MARA in live.warnings[-1]
    assert set(client.memo()["baselines"]) == {MARA}


@pytest.mark.parametrize("body,said", [
    ({"message": ["name must be a string", "apiKey is required"], "error": "Bad Request"},
     "name must be a string; apiKey is required"),
    ({"message": "assistant is pinned", "error": "assistant_pinned"}, "assistant is pinned [assistant_pinned]"),
    ({"message": "no: assistant_pinned here", "error": "assistant_pinned"}, "no: assistant_pinned here"),
    ({"message": [], "error": "Bad Request"}, "Bad Request"),
    ({"message": 5, "error": "Bad Request"}, "Bad Request"),
    ({"message": 5, "error": 6}, '{"message": 5, "error": 6}'),
    (["x"], '["x"]'),
])
def test_vapis_error_messages_are_shown(start: Callable, body: Any, said: str) -> None:
    emu, client = start()
    emu.override("/credential", body, status=400)
    assert fail(client.ping) == f"GET /credential (credential list) failed: HTTP 400: {said}"


def test_a_refused_key_names_the_private_key(start: Callable) -> None:
    emu, client = start(key="vapi-wrong-key")
    assert fail(client.ping).endswith(
        "\n  the account key was refused: set VAPI_API_KEY to your Vapi *private* API key "
        "(Dashboard > Organization > API Keys; the public key is for client SDKs)")


@pytest.mark.parametrize("status,hint", [
    (404, "it no longer exists on Vapi (deleted since the plan was read?); run plan again"),
    (409, "assistant_pinned: a squad pins this assistant (or one of its versions); unpin it in the "
          "squad, then run apply again"),
    (429, "Vapi kept rate-limiting; wait a little and run again, or lower --parallelism")])
def test_errors_carry_vapis_hints(start: Callable, status: int, hint: str) -> None:
    emu, client = start()
    emu.override("/credential", {"message": "m", "error": "e"}, status=status)
    assert fail(client.ping).endswith(f"\n  {hint}")


def test_a_missing_key_or_a_bad_url_is_refused_before_any_request() -> None:
    assert fail(lambda: VapiClient("http://127.0.0.1:9", ""), ConvaiSyncError) == \
        "no account key: set VAPI_API_KEY to your Vapi API key"
    assert fail(lambda: VapiClient("x", KEY), ConvaiSyncError) == (
        "API URL 'x' is not an http(s) URL; set VAPI_API_URL or --api-url to e.g. https://api.vapi.ai")


def test_the_timeout_is_the_clients(start: Callable) -> None:
    emu, client = start(timeout=0.1)
    client.http.retry = RetryPolicy(max_attempts=1, max_total=2.0)
    emu.override("/credential", [], drip=1.0)
    text = fail(client.ping)
    assert "ReadTimeout" in text and "gave up after 1 attempts in 0s" in text


# -- credentials -------------------------------------------------------------------------------


def test_register_creates_the_credential_and_remembers_its_id(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY"), Secret("ignored-2", "X")])
    assert emu.requests[-1].body == {"provider": "custom-llm", "name": "fresh", "apiKey": "(sensitive)"}
    [cid] = [c for c, v in emu.credentials().items() if v.get("name") == "fresh"]
    assert emu.credentials()[cid]["secret_api_key"] == K_NEW
    assert client.memo()["ids"] == {"fresh": cid, "gateway": GW, "vllm": VL}
    client.deregister(change("deregister", "fresh"))  # known by its id: deletable at once
    assert cid not in emu.credentials()


def test_a_register_whose_reply_was_lost_finds_its_credential(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.lose("POST", "/credential", "after")
    client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")])
    [cid] = [c for c, v in emu.credentials().items() if v.get("name") == "fresh"]
    assert writes(emu, "/credential") == 1 and client.memo()["ids"]["fresh"] == cid


def test_a_register_lost_before_it_ran_is_sent_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.lose("POST", "/credential", "before")
    client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")])
    assert writes(emu, "/credential") == 1
    assert [v["name"] for v in emu.credentials().values()].count("fresh") == 1


def test_a_register_reply_without_an_id_is_looked_up_or_refused(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.override("/credential", {"id": 5})  # answers the POST and the lookup's GET alike
    text = fail(lambda: client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")]))
    assert text.startswith("GET /credential (credential list) failed: HTTP 200: unexpected reply shape (not a list)")
    emu.override("/credential", [{"id": VL.upper(), "name": "fresh", "provider": "custom-llm"}])
    client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")])
    assert client.memo()["ids"]["fresh"] == VL
    emu.override("/credential", [{"id": VL, "name": "fresh", "provider": "openai"}])
    assert fail(lambda: client.register(change("register", "other"), [Secret(K_NEW, "VAPI_KEY")])) == (
        "POST /credential (credential 'other') failed: no response: the credential was created but "
        "its id could not be read back\n  run plan again: it will show the credential as live")


def test_update_rotates_the_key_in_place_and_nothing_else(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    sent = client.requests
    client.update(change("update", "gateway"), None)
    client.update(change("update", "gateway"), [])
    assert client.requests == sent  # nothing to send without a key
    client.update(change("update", "gateway"), [Secret(K_NEW, "VAPI_KEY")])
    assert emu.requests[-1].path == f"/credential/{GW}"
    assert emu.requests[-1].body == {"provider": "custom-llm", "apiKey": "(sensitive)"}
    assert emu.credentials()[GW]["secret_api_key"] == K_NEW


def test_a_credential_unknown_to_this_run_is_refused(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    assert fail(lambda: client.update(change("update", "nope"), [Secret(K_NEW, "VAPI_KEY")]),
                ConvaiSyncError) == ("credential 'nope' is not in the account as this run read it; "
                                     "run plan again. Nothing was written for it")


def test_replace_is_never_planned_for_vapi(start: Callable) -> None:
    emu, client = start()
    assert fail(lambda: client.replace(change("replace", "gateway"), []), ConvaiSyncError) == (
        "credential 'gateway': Vapi never needs a replace (everything about a credential can be "
        "updated); this plan was not made for Vapi. Run plan again")


def test_deregister_refuses_a_credential_an_assistant_still_pins(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    assert fail(lambda: client.deregister(change("deregister", "vllm")), ConvaiSyncError) == (
        f"DELETE /credential/{VL} (credential 'vllm') was not sent: assistant(s) 'Trickster Pell' "
        f"({PELL}) still pin it, and deleting it would leave them pinned to a missing credential. "
        "Remove the pin in the Vapi dashboard (or declare them in the manifest), then run apply again")
    assert VL in emu.credentials()


@pytest.mark.parametrize("when", ["before", "after", None])
def test_deregister_deletes_once_and_forgets(start: Callable, when: str | None) -> None:
    account = seed()
    account["assistants"] = []
    emu, client = start(account)
    client.read_state("vapi")
    if when:
        emu.lose("DELETE", f"/credential/{VL}", when)
    client.deregister(change("deregister", "vllm"))
    assert VL not in emu.credentials() and writes(emu, f"/credential/{VL}") == 1
    assert client.memo()["ids"] == {"gateway": GW}
    assert fail(lambda: client.deregister(change("deregister", "vllm")), ConvaiSyncError).startswith(
        "credential 'vllm' is not in the account")


def test_a_deregister_check_that_cannot_read_the_credential_fails(start: Callable) -> None:
    account = seed()
    account["assistants"] = []
    emu, client = start(account)
    client.read_state("vapi")
    emu.lose("DELETE", f"/credential/{VL}", "before")
    emu.lose("GET", f"/credential/{VL}", "before", status=403)
    assert fail(lambda: client.deregister(change("deregister", "vllm"))) == (
        f"GET /credential/{VL} (credential) failed: HTTP 403: lost")
    assert VL in emu.credentials()


# -- assistants --------------------------------------------------------------------------------


def bind_change(aid: str, after: dict, fields: tuple[str, ...], name: str | None = None) -> Change:
    return change("update", aid, after, fields, resource="consumer", name=name)


def test_bind_pins_one_credential_and_sends_the_whole_model(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    before = emu.assistants()[MARA]
    after = {"credential": "vllm", "url": VL_URL, "model": "llama", "temperature": None}
    client.bind(bind_change(MARA, after, ("credential", "url", "model", "temperature")))
    now = emu.assistants()[MARA]
    assert now["credentialIds"] == [OA, VL]  # the other provider's pin stays
    expected = {**before["model"], "url": VL_URL, "model": "llama"}  # a None is not sent
    assert now["model"] == expected
    assert emu.requests[-1].body == {"model": expected, "credentialIds": [OA, VL]}
    assert client.memo()["baselines"] == {}  # nothing declared: no baseline


def test_bind_of_only_the_temperature_leaves_the_pins(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi", desired([model("gateway")], {MARA: "gateway"}))
    client.bind(bind_change(MARA, {"credential": "gateway", "temperature": 1.5, "url": "ignored"},
                            ("temperature",)))
    assert emu.requests[-1].body == {"model": {**custom(), "temperature": 1.5}}
    assert emu.assistants()[MARA]["credentialIds"] == [GW, OA]
    assert client.memo()["baselines"][MARA]["model"] == {"messages": custom()["messages"]}


def test_bind_of_an_assistant_with_several_pins_sends_exactly_one(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    client.bind(bind_change(PELL, {"credential": "vllm", "temperature": 0.2}, ("temperature",)))
    assert emu.assistants()[PELL]["credentialIds"] == [VL]
    assert emu.assistants()[PELL]["model"]["temperature"] == 0.2


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_bind_with_a_lost_reply_lands_once(start: Callable, when: str) -> None:
    emu, client = start()
    client.read_state("vapi", desired([model("vllm")], {MARA: "vllm"}))
    emu.lose("PATCH", f"/assistant/{MARA}", when)
    client.bind(bind_change(MARA, {"credential": "vllm", "temperature": 0.2}, ("credential", "temperature")))
    now = emu.assistants()[MARA]
    assert now["credentialIds"] == [OA, VL] and now["model"]["temperature"] == 0.2
    assert writes(emu, f"/assistant/{MARA}") == 1
    # what the client keeps is the assistant as it now is: the next baseline
    assert client.memo()["baselines"][MARA]["name"] == "Captain Mara"


def test_a_bind_lost_before_it_ran_is_not_taken_for_landed_by_its_pins(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.lose("PATCH", f"/assistant/{OREN}", "before")
    client.bind(bind_change(OREN, {"credential": "vllm", "url": VL_URL, "model": "llama"},
                            ("credential",)))  # the model object already matches: only the pin differs
    assert emu.assistants()[OREN]["credentialIds"] == [VL]


def test_bind_refuses_an_assistant_that_left_custom_llm(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    account = seed()
    account["assistants"][0]["model"] = {"provider": "openai", "model": "gpt-4o"}
    emu.load_seed(account)
    assert fail(lambda: client.bind(bind_change(MARA, {"credential": "vllm"}, ("credential",))),
                ConvaiSyncError) == (
        f"assistant 'Captain Mara' ({MARA}) no longer runs a custom LLM (its provider is now "
        "'openai'); it changed since the plan: run plan again. Nothing was written")
    account["assistants"][0].pop("model")
    emu.load_seed(account)
    assert "(its provider is now None)" in fail(
        lambda: client.bind(bind_change(MARA, {"credential": "vllm"}, ("credential",))), ConvaiSyncError)


@pytest.mark.parametrize("reply", [["not", "an", "object"], {"id": 5}, {"name": "no id"}])
def test_bind_refuses_a_malformed_assistant(start: Callable, reply: Any) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.override(f"/assistant/{MARA}", reply)
    assert fail(lambda: client.bind(bind_change(MARA, {"credential": "vllm"}, ("credential",),
                                                name="Captain Mara"))) == (
        f"GET /assistant/{MARA} (assistant 'Captain Mara' ({MARA})) failed: HTTP 200: unexpected reply "
        "shape\n  the API may have changed; please report this")
    assert fail(lambda: client.bind(bind_change(MARA, {"credential": "vllm"}, ("credential",)))).startswith(
        f"GET /assistant/{MARA} (assistant '{MARA}') failed: HTTP 200: unexpected reply shape")


def test_an_assistant_id_in_upper_case_is_kept_in_lower_case(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi", desired([model("gateway")], {MARA: "gateway"}))
    live = emu.assistants()[MARA]
    emu.override(f"/assistant/{MARA}", {**live, "id": MARA.upper()})
    client.bind(bind_change(MARA, {"credential": "gateway", "temperature": 0.3}, ("temperature",)))
    assert list(client.memo()["baselines"]) == [MARA]


def test_finish_has_nothing_to_tidy(start: Callable) -> None:
    emu, client = start()
    assert client.finish() == [] and client.requests == 0


# -- more of what a mutation run would find untested ------------------------------------------


def test_the_default_client_waits_30_s_and_sends_8_at_once(start: Callable) -> None:
    emu, _ = start()
    with VapiClient(emu.url, KEY) as client:
        assert (client.http.timeout, client.parallelism, client.limit.maximum) == (30.0, 8, 8)


def test_a_credential_with_an_empty_name_is_named_by_its_id(start: Callable) -> None:
    emu, client = start()
    emu.override("/credential", [{"id": GW, "name": "", "provider": "custom-llm"}])
    live = client.read_state("vapi")
    assert set(live.models) == {GW} and f"custom-llm credential {GW} has no name; it is named by its id" \
        in live.warnings


def test_a_declared_assistant_is_not_noted_and_is_reported_on_a_credential_to_move_off(
        start: Callable) -> None:
    emu, client = start()
    live = client.read_state("vapi", desired([model("gateway")], {PELL: "gateway", OREN: "gateway"}))
    assert live.warnings == []
    assert live.consumers[PELL].model == "vllm"  # not its target: so the plan rebinds it to one
    live = client.read_state("vapi", desired([model("vllm")]))
    assert live.consumers[PELL].model == "gateway"  # undeclared: the one the manifest drops


def test_an_assistant_pinning_only_a_missing_or_foreign_credential_is_not_noted(start: Callable) -> None:
    account = seed()
    missing = "99999999-9999-4999-8999-999999999999"
    account["assistants"] = [
        {"id": MARA, "name": "Captain Mara", "credentialIds": [missing], "model": custom()},
        {"id": OREN, "name": "Archivist Oren", "credentialIds": [OA], "model": custom()}]
    emu, client = start(account)
    live = client.read_state("vapi", desired([model("gateway")]))
    assert live.warnings == []
    assert (live.consumers[MARA].model, live.consumers[OREN].model) == (missing, None)


def test_a_baselined_assistant_that_left_custom_llm_is_not_compared(start: Callable) -> None:
    emu, client = start()
    d = desired([model("gateway")], {MARA: "gateway"})
    client.read_state("vapi", d)
    memo = client.memo()
    account = seed()
    account["assistants"][0]["model"] = {"provider": "openai", "model": "gpt-4o"}
    account["assistants"][0]["firstMessage"] = "changed"
    emu.load_seed(account)
    live = client.read_state("vapi", None, memo)
    assert not any("outside convai-sync" in w for w in live.warnings)
    assert client.memo()["baselines"] == {}


# -- what the mutation run found untested ----------------------------------------------------


class Gate(Lossy):
    """Each PATCH of a credential waits (outside the emulator's lock) until `target`
    are in flight at once or 0.06 s pass; `peak` is the most in flight."""

    target = 3

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.cv = threading.Condition()
        self.inflight = self.peak = 0

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> Any:
        if method != "PATCH" or not target.startswith("/credential/"):
            return super().serve(method, target, headers, raw)
        with self.cv:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.peak >= self.target, timeout=0.06)
        try:
            return super().serve(method, target, headers, raw)
        finally:
            with self.cv:
                self.inflight -= 1


def test_the_client_sends_no_more_than_its_parallelism_at_once(serve: Callable[[Any], Any]) -> None:
    emu = serve(Gate(api_key=KEY, seed=seed()))
    with VapiClient(emu.url, KEY, parallelism=2, retry=FAST) as client:
        client.read_state("vapi")
        threads = [threading.Thread(target=client.update, args=(change("update", "gateway"),
                                                                 [Secret(K_NEW, "VAPI_KEY")]))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert emu.peak == 2 and writes(emu, f"/credential/{GW}") == 3


def test_rate_limiting_gives_up_after_the_clients_attempts(start: Callable) -> None:
    emu, client = start()
    emu.override("/credential", {"message": "slow down", "error": "Too Many Requests"}, status=429)
    assert fail(client.ping).startswith("GET /credential (credential list) failed: HTTP 429: slow "
                                        "down (gave up after 4 attempts in")


def test_a_long_assistant_list_is_paged_with_the_clients_parallelism(
        start: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reads, "LIMIT", 4)  # Vapi's 1000, made small
    account = seed()
    account["assistants"] = [{"name": f"A{i}", "model": custom()} for i in range(9)]
    emu, client = start(account)
    live = client.read_state("vapi")
    assert len(live.consumers) == 9 and live.requests == 5
    assert client.read_state("vapi").requests == 5  # each read counts its own


def test_a_fresh_client_needs_no_read_before_its_first_write(start: Callable) -> None:
    emu, client = start()
    assert client.memo() == {"ids": {}, "baselines": {}}
    client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")])
    client.bind(bind_change(OREN, {"credential": "fresh", "temperature": 0.5}, ("credential", "temperature")))
    [cid] = [c for c, v in emu.credentials().items() if v.get("name") == "fresh"]
    assert emu.assistants()[OREN]["credentialIds"] == [cid]
    assert client.memo() == {"ids": {"fresh": cid}, "baselines": {}}


def test_models_are_named_and_kept_credentials_are_not_the_ones_reported(start: Callable) -> None:
    emu, client = start()
    live = client.read_state("vapi", desired([model("gateway")]))
    assert {n: (m.name, m.fields) for n, m in live.models.items()} == {"gateway": ("gateway", {}),
                                                                       "vllm": ("vllm", {})}
    assert live.consumers[PELL].model == "vllm"  # undeclared on two: the one the manifest drops
    live = client.read_state("vapi", desired([model("gateway"), model("vllm")], {PELL: "gateway"}))
    assert live.consumers[PELL].model == "vllm"  # declared: one that is not its target


def test_every_holder_and_every_problem_is_named(start: Callable) -> None:
    account = seed()
    account["assistants"][0]["credentialIds"] = [VL]
    emu, client = start(account)
    client.read_state("vapi")
    assert f"assistant(s) 'Trickster Pell' ({PELL}), 'Captain Mara' ({MARA}) still pin it" in fail(
        lambda: client.deregister(change("deregister", "vllm")), ConvaiSyncError)
    account["assistants"][0]["model"] = {"provider": "openai", "model": "gpt-4o"}
    account["assistants"][2]["model"] = {"provider": "openai", "model": "gpt-4o"}
    account["assistants"][2]["credentialIds"] = [GW]
    emu.load_seed(account)
    text = fail(lambda: client.read_state("vapi", desired([model("x")], prune=True)), ConvaiSyncError)
    assert (f"credential 'gateway'; assistant 'Captain Mara' ({MARA}) does not run a custom LLM but "
            "pins custom-llm credential 'vllm'. Remove") in text
    text = fail(lambda: client.read_state("vapi", desired([model("vllm"), model("gateway")],
                                                          {MARA: "vllm", PELL: "vllm"})), ConvaiSyncError)
    assert f"'Captain Mara' ({MARA}) runs on provider 'openai'; 'Trickster Pell' ({PELL}) runs on" in text


def test_a_temperature_bind_lost_after_it_landed_is_not_sent_again(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.lose("PATCH", f"/assistant/{MARA}", "after")
    client.bind(bind_change(MARA, {"credential": "gateway", "temperature": 0.9}, ("temperature",)))
    assert emu.assistants()[MARA]["model"]["temperature"] == 0.9
    assert writes(emu, f"/assistant/{MARA}") == 1


def test_an_assistant_pinning_a_new_credential_and_another_gets_exactly_one(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")])
    [cid] = [c for c, v in emu.credentials().items() if v.get("name") == "fresh"]
    # meanwhile someone pins it by hand next to the gateway
    httpx.patch(f"{emu.url}/assistant/{OREN}", json={"credentialIds": [GW, cid]},
                headers={"Authorization": f"Bearer {KEY}"}).raise_for_status()
    client.bind(bind_change(OREN, {"credential": "gateway", "temperature": 0.1}, ("temperature",)))
    assert emu.assistants()[OREN]["credentialIds"] == [GW]


def test_what_a_bind_returns_is_the_next_baseline(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi", desired([model("gateway")], {MARA: "gateway"}))
    live = emu.assistants()[MARA]
    emu.override(f"/assistant/{MARA}", {**live, "id": MARA.upper(), "firstMessage": "Hi"})
    client.bind(bind_change(MARA, {"credential": "gateway", "temperature": 0.3}, ("temperature",)))
    baseline = client.memo()["baselines"][MARA]
    assert baseline["firstMessage"] == "Hi" and set(baseline) == {"name", "model", "firstMessage",
                                                                  "isServerUrlSecretSet"}


def test_an_assistant_read_in_upper_case_is_named_in_lower_case(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi")
    emu.override(f"/assistant/{MARA}", {"id": MARA.upper(), "model": {"provider": "openai"}})
    assert fail(lambda: client.bind(bind_change(MARA, {"credential": "vllm"}, ("credential",))),
                ConvaiSyncError).startswith(f"assistant '{MARA}' no longer runs a custom LLM")


FAILED = "failed: HTTP 400: lost"


@pytest.mark.parametrize("method,path,expected", [
    ("POST", "/credential", f"POST /credential (credential 'fresh') {FAILED}"),
    ("PATCH", f"/credential/{GW}", f"PATCH /credential/{GW} (credential 'gateway') {FAILED}"),
    ("DELETE", f"/credential/{VL}", f"DELETE /credential/{VL} (credential 'vllm') {FAILED}"),
    ("GET", f"/assistant/{MARA}", f"GET /assistant/{MARA} (assistant 'Captain Mara' ({MARA})) {FAILED}"),
    ("PATCH", f"/assistant/{MARA}", f"PATCH /assistant/{MARA} (assistant 'Captain Mara' ({MARA})) {FAILED}"),
    ("CHECK", f"/assistant/{MARA}", f"GET /assistant/{MARA} (assistant '{MARA}') {FAILED}"),
])
def test_a_refused_call_names_the_call_and_the_object(start: Callable, method: str, path: str,
                                                      expected: str) -> None:
    account = seed()
    account["assistants"] = account["assistants"][:1]  # nobody pins vllm
    emu, client = start(account)
    client.read_state("vapi")
    if method == "CHECK":  # the bind's read passes, its PATCH is lost, the check's read is refused
        emu.lose("GET", path, "pass")
        emu.lose("PATCH", path, "before")
    emu.lose("GET" if method == "CHECK" else method, path, "before", status=400)
    jobs = {"POST": lambda: client.register(change("register", "fresh"), [Secret(K_NEW, "VAPI_KEY")]),
            "PATCH": lambda: client.update(change("update", "gateway"), [Secret(K_NEW, "VAPI_KEY")]),
            "DELETE": lambda: client.deregister(change("deregister", "vllm"))}
    job = jobs.get(method) if path.startswith("/credential") else lambda: client.bind(bind_change(
        MARA, {"credential": "vllm", "temperature": 0.1}, ("temperature",), name="Captain Mara"))
    assert fail(job) == expected


def test_a_bind_reply_without_an_id_is_kept_as_the_assistant_it_patched(start: Callable) -> None:
    emu, client = start()
    client.read_state("vapi", desired([model("gateway")], {MARA: "gateway"}))
    reply = {k: v for k, v in emu.assistants()[MARA].items() if k != "id"}
    emu.lose("PATCH", f"/assistant/{MARA}", "reply", body={**reply, "firstMessage": "Hi"})
    client.bind(bind_change(MARA, {"credential": "gateway", "temperature": 0.3}, ("temperature",)))
    assert client.memo()["baselines"][MARA]["firstMessage"] == "Hi"
    assert fail(lambda: client.deregister(change("deregister", "gateway")), ConvaiSyncError).startswith(
        f"DELETE /credential/{GW} (credential 'gateway') was not sent: assistant(s) 'Trickster Pell' "
        f"({PELL}), 'Captain Mara' ({MARA}) still pin it")  # and no second, id-less Mara


# -- the drift baseline (providers/vapi/baseline.py) -------------------------------------------

S = "(sensitive)"


def test_the_baseline_masks_every_secret_and_keeps_the_rest(start: Callable) -> None:
    account = seed()
    account["assistants"][0]["metadata"] = {
        "myApiKey": "a1", "x-secret": "b1", "Password": "c1", "access_token": "d1", "refreshToken": "e1",
        "Authorization": "f1", "token": "g1", "tokens": "h1", "keyname": "i1", "secretive": "j1",
        "list": [{"myApiKey": "k1"}, 1], "Headers": {"X-Any": "l1", "deep": {"n": 1}}}
    account["assistants"][0]["model"]["headers"] = {"X-Custom": "m1"}
    emu, client = start(account)
    client.read_state("vapi", desired([model("gateway")], {MARA: "gateway"}))
    assert client.memo()["baselines"][MARA] == {
        "name": "Captain Mara", "isServerUrlSecretSet": False,
        "model": {"messages": [{"role": "system", "content": "Be brief."}], "headers": {"X-Custom": S}},
        "metadata": {"myApiKey": S, "x-secret": S, "Password": S, "access_token": S, "refreshToken": S,
                     "Authorization": S, "token": S, "tokens": "h1", "keyname": "i1", "secretive": "j1",
                     "list": [{"myApiKey": S}, 1], "Headers": {"X-Any": S, "deep": S}}}


def test_drift_names_each_path_and_how_it_changed_up_to_five(start: Callable) -> None:
    account = seed()
    account["assistants"][0]["metadata"] = {"a": 1, "b": [1, 2], "c": "x"}
    emu, client = start(account)
    d = desired([model("gateway")], {MARA: "gateway"})
    client.read_state("vapi", d)
    memo = client.memo()
    account["assistants"][0]["metadata"] = {"a": 2, "b": [1], "d": "new", "e": 1, "f": 2}
    account["assistants"][0]["model"]["messages"].append({"role": "user", "content": "hi"})
    emu.load_seed(account)
    who = f"assistant 'Captain Mara' ({MARA})"

    def drift(memo: dict) -> list[str]:
        return [w for w in client.read_state("vapi", d, memo).warnings if "outside" in w]

    assert drift(memo) == [
        f"{who}: metadata.a changed outside convai-sync; left alone",
        f"{who}: metadata.b[1] removed outside convai-sync; left alone",
        f"{who}: metadata.c removed outside convai-sync; left alone",
        f"{who}: metadata.d added outside convai-sync; left alone",
        f"{who}: metadata.e added outside convai-sync; left alone",
        f"{who}: and 2 more paths changed outside convai-sync; left alone"]
    account["assistants"][0]["metadata"] = {"a": 1, "b": [1, 2], "c": 5}
    emu.load_seed(account)
    assert drift(memo) == [
        f"{who}: metadata.c changed outside convai-sync; left alone",
        f"{who}: model.messages[1] added outside convai-sync; left alone"]
    account["assistants"][0]["metadata"] = {"a": 2, "b": [1, 2, 3], "c": "y", "d": 1}  # + the message
    emu.load_seed(account)
    assert len(drift(memo)) == 5 and not any("more paths" in w for w in drift(memo))  # five: all shown
    assert drift({"baselines": {MARA: []}}) == [
        f"{who}: (the whole assistant) changed outside convai-sync; left alone"]


def test_odd_values_in_an_assistant_read_as_nothing(start: Callable) -> None:
    emu, client = start()
    emu.override("/assistant", [
        {"id": MARA.upper(), "name": "", "model": {"provider": "custom-llm", "url": 5, "model": "m",
                                                    "temperature": True}},
        {"id": OREN, "name": "Oren", "credentialIds": [GW], "model": {
            "provider": "custom-llm", "url": GW_URL, "model": 7, "temperature": "0.5"}},
        {"id": PELL, "name": "Pell", "credentialIds": [GW], "model": {"provider": "custom-llm", "model": "m"}}])
    live = client.read_state("vapi")
    assert {a: (c.id, c.name, c.fields) for a, c in live.consumers.items()} == {
        MARA: (MARA, None, {"url": None, "model": "m", "temperature": None}),
        OREN: (OREN, "Oren", {"url": GW_URL, "model": None, "temperature": None}),
        PELL: (PELL, "Pell", {"url": None, "model": "m", "temperature": None})}
    assert live.warnings[0].endswith(f"(declare them in the manifest to pin one): '{MARA}'")
