"""The Vapi emulator over raw HTTP (httpx, no convai-sync client): the contract in
/work/shared/VAPI_API.md, its faults, and the orphans it records."""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx
import pytest

from convai_sync.emulator.faults import Faults
from convai_sync.emulator.records import OrphanEvent
from convai_sync.errors import ConvaiSyncError
from convai_sync.providers.vapi.emulator import UNAUTHORIZED, VapiEmulator, vapi_demo_seed
from convai_sync.providers.vapi.emulator_seed import normalize_vapi_seed

KEY = "vapi-test-key"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CRED_A = "11111111-1111-4111-8111-111111111111"
CRED_B = "22222222-2222-4222-8222-222222222222"
ASST_1 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
ASST_2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
MISSING = "99999999-9999-4999-8999-999999999999"


def model(**extra) -> dict:
    return {"provider": "custom-llm", "url": "https://llm.example/v1", "model": "gpt-4o-mini",
            **extra}


FULL_MODEL = model(temperature=0.4, messages=[{"role": "system", "content": "Be brief."}],
                   tools=[{"type": "endCall"}], toolIds=["t-1"])
SEED = {
    "credentials": [{"id": CRED_A, "name": "cred-a", "apiKey": "sk-a-SECRET"},
                    {"id": CRED_B, "name": "cred-b", "apiKey": "sk-b-SECRET"},
                    {"name": "oa", "provider": "openai", "apiKey": "sk-oa-SECRET"}],
    "assistants": [{"id": ASST_1, "name": "One", "firstMessage": "Hi", "model": FULL_MODEL,
                    "credentialIds": ["cred-a"]},
                   {"id": ASST_2, "name": "Two", "model": model(), "credentialIds": [CRED_B]}],
}


@pytest.fixture
def make_emu(serve: Callable[[Any], Any]) -> Callable[..., VapiEmulator]:
    def make(**kw) -> VapiEmulator:
        kw.setdefault("api_key", KEY)
        kw.setdefault("seed", SEED)
        return serve(VapiEmulator(**kw))

    return make


@pytest.fixture
def emu(make_emu) -> VapiEmulator:
    return make_emu()


def client_for(emu: VapiEmulator, key: str | None = KEY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.Client(base_url=emu.url, headers=headers, timeout=5, verify=False)


@pytest.fixture
def client(emu) -> Iterator[httpx.Client]:
    with client_for(emu) as c:
        yield c


def bad_request(r: httpx.Response) -> list[str] | str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "Bad Request" and body["statusCode"] == 400
    return body["message"]


def many(n: int) -> dict:
    return {"credentials": [{"name": f"c{i}", "apiKey": f"k{i}"} for i in range(n)],
            "assistants": [{"name": f"a{i}", "model": model()} for i in range(n)]}


# --- auth and routing -----------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}])
def test_auth_rejects_with_the_exact_401_body(emu, headers):
    with httpx.Client(base_url=emu.url, headers=headers, verify=False) as c:
        for r in (c.get("/credential"), c.post("/assistant", json={}),
                  c.delete(f"/credential/{CRED_A}")):
            assert r.status_code == 401
            assert r.json() == UNAUTHORIZED
            assert r.json()["message"].startswith("Invalid Key. Hot tip")
    assert len(emu.credentials()) == 3 and emu.writes() == []


def test_bearer_scheme_is_case_insensitive(emu):
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"bearer {KEY}"}, verify=False) as c:
        assert c.get("/assistant").status_code == 200


def test_unknown_routes_are_nestjs_404(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"message": "Cannot GET /nope", "error": "Not Found", "statusCode": 404}
    assert client.put(f"/credential/{CRED_A}", json={}).status_code == 404


# --- credentials ----------------------------------------------------------------------------

def test_create_credential_is_201_without_the_key(emu, client):
    r = client.post("/credential", json={"provider": "custom-llm", "apiKey": "sk-new-SECRET",
                                         "name": "gateway"})
    assert r.status_code == 201
    body = r.json()
    assert UUID.match(body["id"]) and body["orgId"] == emu.org_id
    assert body["provider"] == "custom-llm" and body["name"] == "gateway"
    assert STAMP.match(body["createdAt"]) and body["createdAt"] == body["updatedAt"]
    assert "apiKey" not in body and "SECRET" not in r.text
    assert emu.credentials()[body["id"]]["secret_api_key"] == "sk-new-SECRET"
    assert client.get(f"/credential/{body['id']}").json() == body


def test_oauth2_credential_hides_the_client_secret(client):
    plan = {"type": "oauth2", "url": "https://auth.example/token", "clientId": "cid",
            "clientSecret": "cs-SECRET", "scope": "llm"}
    r = client.post("/credential", json={"provider": "custom-llm", "apiKey": "k-SECRET",
                                         "authenticationPlan": plan})
    assert r.status_code == 201 and "SECRET" not in r.text
    assert r.json()["authenticationPlan"] == {k: v for k, v in plan.items() if k != "clientSecret"}


@pytest.mark.parametrize("body, message", [
    ({"apiKey": "k"}, "provider must be one of the following values:"),
    ({"provider": "nope", "apiKey": "k"}, "provider must be one of the following values:"),
    ({"provider": "custom-llm"}, "apiKey must be a string"),
    ({"provider": "custom-llm", "apiKey": 5}, "apiKey must be a string"),
    ({"provider": "custom-llm", "apiKey": "k" * 10001},
     "apiKey must be shorter than or equal to 10000 characters"),
    ({"provider": "custom-llm", "apiKey": "k", "name": ""},
     "name must be longer than or equal to 1 characters"),
    ({"provider": "custom-llm", "apiKey": "k", "name": "n" * 41},
     "name must be shorter than or equal to 40 characters"),
    ({"provider": "custom-llm", "apiKey": "k", "url": "https://x"},
     "property url should not exist"),
    ({"provider": "custom-llm", "apiKey": "k", "authenticationPlan": "token"},
     "authenticationPlan must be an object"),
    ({"provider": "custom-llm", "apiKey": "k", "authenticationPlan": {
        "type": "oauth2", "url": "u", "clientId": "c", "clientSecret": "s", "audience": "a"}},
     "authenticationPlan.property audience should not exist"),
    ({"provider": "custom-llm", "apiKey": "k", "authenticationPlan": {"type": "oauth2"}},
     "authenticationPlan.url must be a string"),
])
def test_create_credential_validation(emu, client, body, message):
    messages = bad_request(client.post("/credential", json=body))
    assert any(m.startswith(message) for m in messages), messages
    assert len(emu.credentials()) == 3 and emu.writes() == []


def test_other_providers_are_opaque_and_listed_mixed(client):
    r = client.post("/credential", json={"provider": "twilio", "accountSid": "AC1",
                                         "authToken": "t", "name": "phones"})
    assert r.status_code == 201 and r.json()["accountSid"] == "AC1"
    assert bad_request(client.post("/credential", json={"provider": "twilio", "id": MISSING})) == [
        "property id should not exist"]
    assert bad_request(client.patch(f"/credential/{r.json()['id']}", json={
        "provider": "twilio", "orgId": "x"})) == ["property orgId should not exist"]
    providers = sorted(c["provider"] for c in client.get("/credential").json())
    assert providers == ["custom-llm", "custom-llm", "openai", "twilio"]


def test_api_key_is_never_returned_nor_logged(emu, client):
    created = client.post("/credential", json={"provider": "custom-llm", "apiKey": "sk-x-SECRET"})
    cid = created.json()["id"]
    texts = [created.text, client.get("/credential").text, client.get(f"/credential/{cid}").text,
             client.patch(f"/credential/{cid}", json={"provider": "custom-llm",
                                                      "apiKey": "sk-y-SECRET"}).text,
             client.delete(f"/credential/{cid}").text]
    assert not any("SECRET" in t or "apiKey" in t for t in texts)
    assert "SECRET" not in repr(emu.requests)
    assert emu.requests[0].body["apiKey"] == "(sensitive)"


def test_patch_credential_rotates_the_key_in_place(emu, client):
    before = client.get(f"/credential/{CRED_A}").json()
    r = client.patch(f"/credential/{CRED_A}", json={"provider": "custom-llm",
                                                    "apiKey": "sk-rotated", "name": "cred-a2"})
    assert r.status_code == 200
    after = r.json()
    assert after["id"] == CRED_A and after["name"] == "cred-a2" and "apiKey" not in after
    assert after["createdAt"] == before["createdAt"] and after["updatedAt"] > before["updatedAt"]
    assert emu.credentials()[CRED_A]["secret_api_key"] == "sk-rotated"
    assert emu.credentials()[CRED_B]["secret_api_key"] == "sk-b-SECRET"


@pytest.mark.parametrize("body, message", [
    ({"apiKey": "k"}, "provider must be one of the following values:"),
    ({"provider": "openai", "apiKey": "k"}, "provider cannot be changed"),
    ({"provider": "custom-llm", "model": "x"}, "property model should not exist"),
    ({"provider": "custom-llm", "name": ""}, "name must be longer than or equal to 1"),
])
def test_patch_credential_validation(emu, client, body, message):
    messages = bad_request(client.patch(f"/credential/{CRED_A}", json=body))
    assert any(m.startswith(message) for m in messages), messages
    assert emu.credentials()[CRED_A]["secret_api_key"] == "sk-a-SECRET"


def test_delete_credential_returns_it_then_404s(emu, client):
    r = client.delete(f"/credential/{CRED_B}")
    assert r.status_code == 200 and r.json()["id"] == CRED_B and r.json()["name"] == "cred-b"
    assert CRED_B not in emu.credentials()
    for call in (client.get, client.delete):
        r = call(f"/credential/{CRED_B}")
        assert r.status_code == 404
        assert r.json() == {"message": "Credential not found", "error": "Not Found",
                            "statusCode": 404}
    assert client.patch(f"/credential/{CRED_B}",
                        json={"provider": "custom-llm"}).status_code == 404


@pytest.mark.parametrize("path", ["/credential/not-a-uuid", "/assistant/123"])
def test_malformed_ids_are_400(client, path):
    for call in (client.get, client.delete):
        assert bad_request(call(path)) == "Validation failed (uuid is expected)"


def test_ids_match_case_insensitively(client):
    assert client.get(f"/credential/{CRED_A.upper()}").json()["id"] == CRED_A


def test_bad_json_bodies_are_400(emu, client):
    for content in (b"{nope", b"[1, 2]"):
        assert isinstance(bad_request(client.post("/credential", content=content)), str)
    assert emu.writes() == []


# --- lists ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/credential", "/assistant"])
def test_lists_are_bare_arrays_limited_to_100_by_default(make_emu, path):
    emu = make_emu(seed=many(150))
    with client_for(emu) as c:
        assert len(c.get(path).json()) == 100
        assert len(c.get(path, params={"limit": 1000}).json()) == 150
        assert len(c.get(path, params={"limit": 7}).json()) == 7
        assert c.get(path, params={"limit": 0}).json() == []
        for bad, message in (("1001", "limit must not be greater than 1000"),
                             ("-1", "limit must not be less than 0"),
                             ("ten", "limit must be a number conforming")):
            assert bad_request(c.get(path, params={"limit": bad}))[0].startswith(message)
        assert bad_request(c.get(path, params={"page": 2})) == ["property page should not exist"]


def test_list_default_limit_is_configurable(make_emu):
    emu = make_emu(seed=many(10), list_default_limit=3)
    with client_for(emu) as c:
        assert len(c.get("/assistant").json()) == 3
        assert c.get("/v2/assistant").json()["metadata"]["itemsPerPage"] == 3


def test_lists_are_newest_first(make_emu):
    emu = make_emu(seed=many(3))
    with client_for(emu) as c:
        new = c.post("/assistant", json={"name": "newest"}).json()
        names = [a["name"] for a in c.get("/assistant").json()]
    assert names == ["newest", "a2", "a1", "a0"] and STAMP.match(new["createdAt"])


def test_v2_assistant_pages(make_emu):
    emu = make_emu(seed=many(95))
    with client_for(emu) as c:
        pages = [c.get("/v2/assistant", params={"limit": 40, "page": p}).json()
                 for p in (1, 2, 3, 4)]
        default = c.get("/v2/assistant").json()
        asc = c.get("/v2/assistant", params={"sortOrder": "ASC", "limit": 2}).json()
        assert bad_request(c.get("/v2/assistant", params={"page": 0})) == [
            "page must not be less than 1"]
        assert bad_request(c.get("/v2/assistant", params={"sortOrder": "up"})) == [
            "sortOrder must be one of the following values: ASC, DESC"]
    assert [len(p["results"]) for p in pages] == [40, 40, 15, 0]
    assert [p["metadata"] for p in pages[:2]] == [
        {"itemsPerPage": 40, "totalItems": 95, "currentPage": 1},
        {"itemsPerPage": 40, "totalItems": 95, "currentPage": 2}]
    names = [a["name"] for p in pages for a in p["results"]]
    assert names == [f"a{i}" for i in reversed(range(95))]  # DESC by default, no overlap
    assert default["metadata"] == {"itemsPerPage": 100, "totalItems": 95, "currentPage": 1}
    assert [a["name"] for a in asc["results"]] == ["a0", "a1"]


def test_date_filters(emu, client):
    time.sleep(0.005)
    created = client.post("/credential", json={"provider": "custom-llm", "apiKey": "k"}).json()
    stamp = created["createdAt"]
    assert [c["id"] for c in client.get("/credential", params={"createdAtGe": stamp}).json()] == [
        created["id"]]
    assert created["id"] not in [c["id"] for c in client.get(
        "/credential", params={"createdAtLt": stamp}).json()]
    assert len(client.get("/credential", params={"createdAtLe": stamp}).json()) == 4
    client.patch(f"/assistant/{ASST_2}", json={"name": "Two b"})
    recent = client.get("/assistant", params={"updatedAtGt": "2025-06-01T00:00:00.000Z"}).json()
    assert [a["id"] for a in recent] == [ASST_2]
    assert bad_request(client.get("/assistant", params={"createdAtGt": "yesterday"})) == [
        "createdAtGt must be a valid ISO 8601 date string"]


# --- assistants -----------------------------------------------------------------------------

def test_create_assistant_is_201_with_read_only_fields(emu, client):
    r = client.post("/assistant", json={"name": "New", "model": FULL_MODEL,
                                        "credentialIds": [CRED_A]})
    assert r.status_code == 201
    body = r.json()
    assert UUID.match(body["id"]) and body["orgId"] == emu.org_id
    assert STAMP.match(body["createdAt"]) and STAMP.match(body["updatedAt"])
    assert body["model"] == FULL_MODEL and body["credentialIds"] == [CRED_A]
    assert body["isServerUrlSecretSet"] is False
    assert client.get(f"/assistant/{body['id']}").json() == body
    assert emu.assistants()[body["id"]] == body


@pytest.mark.parametrize("field", ["id", "orgId", "createdAt", "updatedAt", "isDeleted",
                                   "isServerUrlSecretSet", "latestVersion", "credentialId"])
def test_read_only_and_unknown_fields_are_rejected(emu, client, field):
    for r in (client.post("/assistant", json={"name": "x", field: "v"}),
              client.patch(f"/assistant/{ASST_1}", json={field: "v"})):
        assert bad_request(r) == [f"property {field} should not exist"]
    assert emu.writes() == []


def test_get_then_patch_the_whole_body_back_fails(client):
    """A client must strip read-only fields before re-sending what it read."""
    body = client.get(f"/assistant/{ASST_1}").json()
    messages = bad_request(client.patch(f"/assistant/{ASST_1}", json=body))
    assert "property id should not exist" in messages
    assert "property isServerUrlSecretSet should not exist" in messages


@pytest.mark.parametrize("bad_model, message", [
    ({"provider": "custom-llm", "model": "m"}, "model.url must be a string"),
    ({"temperature": 0.3}, "model.provider must be one of the following values:"),
    (model(temperature=2.5), "model.temperature must not be greater than 2"),
    (model(temperature=-0.1), "model.temperature must not be less than 0"),
    (model(maxTokens=10), "model.maxTokens must not be less than 50"),
    (model(maxTokens=10001), "model.maxTokens must not be greater than 10000"),
    (model(timeoutSeconds=301), "model.timeoutSeconds must not be greater than 300"),
    (model(temperature="hot"), "model.temperature must be a number conforming"),
    (model(credentialId=CRED_A), "model.property credentialId should not exist"),
    (model(metadataSendMode="all"), "model.metadataSendMode must be one of"),
    (model(messages=[{"role": "boss", "content": "x"}]), "model.messages.0.role must be one of"),
    (model(messages=[{"role": "system"}]), "model.messages.0.content must be a string"),
    (model(messages=[{"role": "system", "content": "x", "name": "n"}]),
     "model.messages.0.property name should not exist"),
    (model(toolIds=[1]), "model.each value in toolIds must be a string"),
    (model(headers={"Authorization": "Bearer x"}), "model.headers cannot override Authorization"),
    (model(knowledgeBase={"provider": "custom-knowledge-base"}),
     "model.knowledgeBase.server must be an object"),
    ("gpt-4o", "model must be an object"),
])
def test_model_validation(emu, client, bad_model, message):
    messages = bad_request(client.post("/assistant", json={"model": bad_model}))
    assert any(m.startswith(message) for m in messages), messages
    messages = bad_request(client.patch(f"/assistant/{ASST_1}", json={"model": bad_model}))
    assert any(m.startswith(message) for m in messages), messages
    assert emu.assistants()[ASST_1]["model"] == FULL_MODEL and len(emu.assistants()) == 2


def test_full_custom_llm_model_is_accepted(client):
    full = model(temperature=2, maxTokens=50, timeoutSeconds=0, metadataSendMode="off",
                 headers={"X-Team": "a"}, messages=[{"role": "system", "content": None}],
                 tools=[{"type": "function", "function": {"name": "f"}}], toolIds=["t"],
                 toolRefs=[{"toolId": MISSING, "version": "3"}],
                 knowledgeBase={"provider": "custom-knowledge-base", "server": {"url": "u"}},
                 wordLevelConfidenceEnabled=False, emotionRecognitionEnabled=True, numFastTurns=1)
    r = client.post("/assistant", json={"model": full})
    assert r.status_code == 201 and r.json()["model"] == full


def test_assistant_name_is_at_most_40(client):
    assert client.post("/assistant", json={"name": "n" * 40}).status_code == 201
    assert bad_request(client.post("/assistant", json={"name": "n" * 41})) == [
        "name must be shorter than or equal to 40 characters"]


def test_credential_ids_must_exist(emu, client):
    message = bad_request(client.post("/assistant", json={"credentialIds": [CRED_A, MISSING]}))
    assert message == f"Credential with ID {MISSING} not found"
    message = bad_request(client.patch(f"/assistant/{ASST_2}", json={"credentialIds": [MISSING]}))
    assert "not found" in message
    assert emu.assistants()[ASST_2]["credentialIds"] == [CRED_B] and emu.writes() == []


def test_patch_replaces_the_whole_model(emu, client):
    r = client.patch(f"/assistant/{ASST_1}", json={"model": model(temperature=0.9)})
    assert r.status_code == 200
    assert r.json()["model"] == model(temperature=0.9)  # messages, tools, toolIds gone
    stored = emu.assistants()[ASST_1]
    assert "messages" not in stored["model"] and "tools" not in stored["model"]
    assert stored["name"] == "One" and stored["firstMessage"] == "Hi"  # untouched top level
    assert stored["credentialIds"] == [CRED_A]


def test_patch_leaves_unsent_fields_alone_and_null_clears(emu, client):
    before = client.get(f"/assistant/{ASST_1}").json()
    after = client.patch(f"/assistant/{ASST_1}", json={"name": "Uno",
                                                       "firstMessage": None}).json()
    assert after["model"] == FULL_MODEL and after["name"] == "Uno"
    assert after["firstMessage"] is None
    assert after["createdAt"] == before["createdAt"] and after["updatedAt"] > before["updatedAt"]


def test_put_replaces_the_whole_assistant(client):
    r = client.put(f"/assistant/{ASST_1}", json={"name": "Fresh"})
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "Fresh" and "model" not in body and "credentialIds" not in body
    assert body["id"] == ASST_1


def test_delete_assistant_returns_it_then_404s(emu, client):
    r = client.delete(f"/assistant/{ASST_2}")
    assert r.status_code == 200 and r.json()["name"] == "Two" and r.json()["id"] == ASST_2
    r = client.get(f"/assistant/{ASST_2}")
    assert r.status_code == 404
    assert r.json() == {"message": "Assistant not found", "error": "Not Found", "statusCode": 404}
    assert client.patch(f"/assistant/{ASST_2}", json={}).status_code == 404
    assert ASST_2 not in emu.assistants()


# --- orphans --------------------------------------------------------------------------------

def test_deleting_a_pinned_credential_succeeds_and_records_orphans(emu, client):
    client.post("/assistant", json={"name": "Three", "credentialIds": [CRED_B, CRED_A]})
    three = client.get("/assistant").json()[0]["id"]
    assert client.delete(f"/credential/{CRED_A}").status_code == 200
    seq = emu.requests[-1].seq
    path = f"/credential/{CRED_A}"
    assert sorted(emu.orphan_events, key=repr) == sorted(
        [OrphanEvent(seq, path, ASST_1, CRED_A), OrphanEvent(seq, path, three, CRED_A)],
        key=repr)


def test_safe_order_records_no_orphans(emu, client):
    assert client.patch(f"/assistant/{ASST_1}", json={"credentialIds": [CRED_B]}).status_code == 200
    assert client.delete(f"/credential/{CRED_A}").status_code == 200
    assert emu.orphan_events == [] and len(emu.writes()) == 2


def test_seeded_orphans_do_not_count(make_emu):
    seed = {**SEED, "assistants": SEED["assistants"] + [
        {"name": "Stale", "model": model(), "credentialIds": [MISSING]}]}
    emu = make_emu(seed=seed)
    with client_for(emu) as c:
        stale = next(a["id"] for a in c.get("/assistant").json() if a["name"] == "Stale")
        assert c.patch(f"/assistant/{stale}", json={"name": "Still stale"}).status_code == 200
        assert emu.orphan_events == []
        c.delete(f"/credential/{CRED_B}")
    assert [(e.seq, e.path) for e in emu.orphan_events] == [(3, f"/credential/{CRED_B}")]
    assert [e for e in emu.orphan_events if stale in repr(e)] == []


def test_failed_and_unrelated_writes_record_nothing(emu, client):
    client.delete(f"/credential/{MISSING}")
    client.post("/credential", json={"provider": "custom-llm", "apiKey": "k"})
    client.delete(f"/assistant/{ASST_1}")
    client.delete(f"/credential/{CRED_A}")  # its only pinning assistant is gone
    assert emu.orphan_events == []


# --- faults and latency ---------------------------------------------------------------------

def test_before_faults_use_the_vapi_error_shape_and_change_nothing(make_emu):
    emu = make_emu(faults=Faults(rate=1.0, seed=3))
    statuses = set()
    with client_for(emu) as c:
        for _ in range(30):
            try:
                r = c.post("/credential", json={"provider": "custom-llm", "apiKey": "k"})
            except httpx.TransportError:
                continue
            statuses.add(r.status_code)
            assert r.json()["statusCode"] == r.status_code and "error" in r.json()
            assert "Retry-After" not in r.headers  # unknown whether Vapi sends one
    assert 429 in statuses and statuses <= {429, 500, 502, 503}
    assert len(emu.credentials()) == 3 and emu.writes() == []


def test_injected_429_carries_retry_after_when_asked(make_emu):
    emu = make_emu(faults=Faults(rate=1.0, seed=3, retry_after=2))
    with client_for(emu) as c:
        for _ in range(30):
            try:
                r = c.get("/assistant")
            except httpx.TransportError:
                continue
            if r.status_code == 429:
                assert r.headers["Retry-After"] == "2"
                assert r.json() == {"message": "Rate limit exceeded",
                                    "error": "Too Many Requests", "statusCode": 429}
                return
    pytest.fail("no 429 drawn")


def test_after_commit_fault_really_commits(make_emu):
    emu = make_emu(faults=Faults(after_commit=1.0, seed=1))
    with client_for(emu) as c:
        try:
            assert c.delete(f"/credential/{CRED_B}").status_code in (500, 502)
        except httpx.TransportError:
            pass
        emu.faults = Faults()
        assert c.get(f"/credential/{CRED_B}").status_code == 404
    (rec, _) = emu.requests
    assert rec.committed and rec.fault.startswith("after:")
    assert [e.seq for e in emu.orphan_events] == [rec.seq]  # the orphan is real all the same


def test_latency_applies_and_overlaps(make_emu):
    emu = make_emu(faults=Faults(latency_ms=100))
    with client_for(emu) as c:
        c.get("/assistant")
        start = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: c.get("/credential").status_code, range(6)))
        elapsed = time.perf_counter() - start
    assert codes == [200] * 6 and 0.1 <= elapsed < 0.4, elapsed


def test_max_inflight_answers_429(make_emu):
    emu = make_emu(faults=Faults(max_inflight=2, latency_ms=150))
    barrier = threading.Barrier(6)

    def call(_):
        with client_for(emu) as c:
            barrier.wait()
            return c.get("/assistant")

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(call, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes, codes
    for r in responses:
        if r.status_code == 429:
            assert r.json()["statusCode"] == 429 and "Retry-After" not in r.headers


# --- seeds ----------------------------------------------------------------------------------

def test_demo_seed_is_a_drifted_mixed_account(make_emu):
    seed = vapi_demo_seed()
    emu = make_emu(seed=seed)
    creds = {c["name"]: c for c in emu.credentials().values()}
    assert sorted((c["provider"], n) for n, c in creds.items()) == [
        ("custom-llm", "legacy-vllm"), ("custom-llm", "studio-gateway"), ("openai", "openai-main")]
    assistants = {a["name"]: a for a in emu.assistants().values()}
    assert len(assistants) == 4
    for a in assistants.values():
        assert a["model"]["messages"][0]["role"] == "system"
        assert a["model"].get("tools") or a["model"].get("toolIds")
    assert assistants["Trickster Pell"]["credentialIds"] == [creds["legacy-vllm"]["id"]]
    with client_for(emu) as c:
        assert c.delete(f"/credential/{creds['legacy-vllm']['id']}").status_code == 200
    assert len(emu.orphan_events) == 1


def test_seed_ids_are_stable_and_names_resolve():
    seed = {"credentials": [{"name": "k", "apiKey": "s"}],
            "assistants": [{"name": "a", "model": model(), "credentialIds": ["k"]}]}
    first, second = normalize_vapi_seed(seed), normalize_vapi_seed(seed)
    assert first == second
    cred, asst = first["credentials"][0], first["assistants"][0]
    assert UUID.match(cred["id"]) and cred["provider"] == "custom-llm"
    assert asst["credentialIds"] == [cred["id"]]


@pytest.mark.parametrize("seed, message", [
    ({"credentials": [{"name": "k"}]}, "apiKey must be a string"),
    ({"assistants": [{"name": "a", "model": {"provider": "custom-llm"}}]}, "model.url"),
    ({"assistants": [{"name": "a", "credentialIds": ["ghost"]}]}, "no credential named 'ghost'"),
    ({"credentials": [{"name": "k", "apiKey": "s"}, {"name": "k", "apiKey": "t"}],
      "assistants": [{"credentialIds": ["k"]}]}, "ambiguous"),
    ({"credentials": [{"id": "x", "name": "k", "apiKey": "s"}]}, "id must be a uuid"),
    ({"credentials": [{"id": CRED_A, "apiKey": "s"}, {"id": CRED_A, "apiKey": "t"}]},
     "duplicate id"),
    ({"models": []}, "only 'credentials' and 'assistants'"),
])
def test_bad_seeds_raise(seed, message):
    with pytest.raises(ConvaiSyncError, match=re.escape(message)):
        VapiEmulator(seed=seed)


def test_load_seed_replaces_state(emu):
    emu.load_seed({"credentials": [], "assistants": []})
    assert emu.credentials() == {} and emu.assistants() == {}
