"""The Convai emulator over real HTTP: endpoint shapes, errors, invariants, faults, CLI."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from convai_sync.emulator import (Emulator, Faults, OrphanEvent, RecordedRequest, demo_seed,
                                  load_seed_file)
from convai_sync.emulator.cli import emulator_command
from convai_sync.errors import ConvaiSyncError

KEY = "test-key"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

SEED = {
    "models": [
        {"model_group_name": "m-alpha", "model_name": "gpt-4o-mini", "api_key": "sk-alpha-SECRET",
         "base_url": "https://alpha.example/v1", "display_name": "Alpha"},
        {"model_group_name": "m-beta", "model_name": "llama", "api_key": "sk-beta-SECRET",
         "base_url": "https://beta.example/v1", "display_name": "Beta", "is_uncensored": True},
    ],
    "characters": [
        {"character_id": "c1", "character_name": "One", "model_group_name": "m-alpha",
         "temperature": 0.4},
        {"character_id": "c2", "character_name": "Two", "model_group_name": "gpt-4o",
         "temperature": 0.7},
    ],
}


@pytest.fixture
def make_emu(make_emulator):
    def make(**kwargs) -> Emulator:
        kwargs.setdefault("account_key", KEY)
        kwargs.setdefault("seed", SEED)
        return make_emulator(**kwargs)

    return make


@pytest.fixture
def emu(make_emu) -> Emulator:
    return make_emu()


def client_for(emu: Emulator, key: str | None = KEY) -> httpx.Client:
    headers = {"CONVAI-API-KEY": key} if key is not None else {}
    # verify=False: plain http, and it skips loading CA certificates (~100 ms per client)
    return httpx.Client(base_url=emu.url, headers=headers, timeout=5, verify=False)


@pytest.fixture
def client(emu):
    with client_for(emu) as c:
        yield c


def register_body(name: str = "m-new", **extra) -> dict:
    return {"model_group_name": name, "model_name": "gpt-4o-mini", "api_key": "sk-new-SECRET",
            "is_uncensored": False, **extra}


# --- llm-models dialect -------------------------------------------------------------------

def test_llm_register_update_deregister_list(emu, client):
    r = client.post("/llm-models/register", json=register_body(display_name="New"))
    assert r.status_code == 200
    body = r.json()
    assert {k: body[k] for k in ("status", "model_group_name", "model_name", "display_name")} == {
        "status": "success", "model_group_name": "m-new", "model_name": "gpt-4o-mini",
        "display_name": "New"}
    assert body["message"] and UUID.match(body["transactionID"])
    assert emu.models()["m-new"]["base_url"] == "https://api.openai.com/v1"  # documented default

    r = client.post("/llm-models/update", json={"model_group_name": "m-new", "display_name": "N2",
                                                 "api_key": "sk-2", "model_name": "ignored"})
    assert r.status_code == 200
    assert r.json()["updated_fields"] == ["display_name", "api_key"]
    assert r.json()["status"] == "success" and UUID.match(r.json()["transactionID"])
    model = emu.models()["m-new"]
    assert (model["display_name"], model["api_key"], model["model_name"]) == (
        "N2", "sk-2", "gpt-4o-mini")

    listed = client.post("/llm-models/list").json()
    assert listed["status"] == "success" and listed["count"] == 3
    assert [m["model_group_name"] for m in listed["models"]] == ["m-alpha", "m-beta", "m-new"]
    assert set(listed["models"][1]) == {"model_group_name", "model_name", "display_name",
                                        "base_url", "is_uncensored", "category", "created_at"}
    assert listed["models"][1]["is_uncensored"] is True
    assert listed["models"][1]["category"] == "Private"

    r = client.post("/llm-models/deregister", json={"model_group_name": "m-new"})
    assert r.status_code == 200 and r.json()["status"] == "success"
    assert "m-new" not in emu.models()
    assert [w.path for w in emu.writes()] == [
        "/llm-models/register", "/llm-models/update", "/llm-models/deregister"]


def test_transaction_ids_are_fresh(client):
    ids = {client.post("/llm-models/list").json()["transactionID"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("body, status, message", [
    ({"model_name": "x", "api_key": "k", "is_uncensored": False}, 400, "model_group_name"),
    (register_body(is_uncensored=None), 400, "is_uncensored"),
    (register_body(is_uncensored="false"), 400, "is_uncensored"),
    (register_body(model_name=5), 400, "model_name"),
    (register_body(display_name=""), 400, "display_name"),
    (register_body("gpt-4o"), 400, "built-in"),
    (register_body("m-alpha"), 409, "model_group_name already exists"),
    (register_body(display_name="Beta"), 409, "display_name already exists"),
])
def test_llm_register_refusals(emu, client, body, status, message):
    r = client.post("/llm-models/register", json=body)
    assert r.status_code == status
    assert r.json()["status"] == "error" and message in r.json()["message"]
    assert UUID.match(r.json()["transactionID"])
    assert set(emu.models()) == {"m-alpha", "m-beta"} and emu.writes() == []


@pytest.mark.parametrize("body, status, message", [
    ({"display_name": "x"}, 400, "model_group_name"),
    ({"model_group_name": "m-alpha"}, 400, "No valid fields to update"),
    ({"model_group_name": "m-alpha", "model_name": "other"}, 400, "No valid fields to update"),
    ({"model_group_name": "m-alpha", "is_uncensored": 1}, 400, "is_uncensored"),
    ({"model_group_name": "nope", "base_url": "https://x/v1"}, 404, "not found"),
    ({"model_group_name": "m-alpha", "display_name": "Beta"}, 409, "display_name already exists"),
])
def test_llm_update_refusals(emu, client, body, status, message):
    r = client.post("/llm-models/update", json=body)
    assert r.status_code == status and message in r.json()["message"]
    assert emu.models()["m-alpha"]["display_name"] == "Alpha" and emu.writes() == []


def test_update_keeping_own_display_name_is_fine(client):
    r = client.post("/llm-models/update", json={"model_group_name": "m-alpha",
                                                 "display_name": "Alpha"})
    assert r.status_code == 200


def test_deregister_unknown_is_404(client):
    r = client.post("/llm-models/deregister", json={"model_group_name": "ghost"})
    assert r.status_code == 404 and r.json()["status"] == "error"


# --- custom-llm dialect ---------------------------------------------------------------------

def test_custom_llm_dialect(make_emu):
    emu = make_emu(dialect="custom-llm")
    with client_for(emu) as c:
        body = register_body(base_url="https://new.example/v1", display_name="Ignored")
        del body["is_uncensored"]  # optional in this dialect
        r = c.post("/custom-llm/register", json=body)
        assert r.status_code == 200 and r.json()["status"] == "success"
        assert emu.models()["m-new"]["display_name"] != "Ignored"
        assert emu.models()["m-new"]["is_uncensored"] is False

        r = c.post("/custom-llm/update", json={"model_group_name": "m-new", "model_name": "v2"})
        assert r.status_code == 200 and r.json()["updated_fields"] == ["model_name"]
        assert emu.models()["m-new"]["model_name"] == "v2"

        listed = c.post("/custom-llm/list").json()
        assert listed[-1] == {"model_group_name": "m-new", "model_name": "v2",
                              "base_url": "https://new.example/v1"}
        assert all(set(m) == {"model_group_name", "model_name", "base_url"} for m in listed)

        r = c.post("/custom-llm/deregister", json={"model_group_name": "m-new"})
        assert r.status_code == 200 and "m-new" not in emu.models()

        missing_url = {k: v for k, v in register_body("m-x").items() if k != "is_uncensored"}
        assert c.post("/custom-llm/register", json=missing_url).status_code == 400
        assert c.post("/custom-llm/register", json={**missing_url, "base_url": "u",
                                                    "model_group_name": "m-alpha"}).status_code == 409
        assert c.post("/custom-llm/update", json={"model_group_name": "m-alpha"}).status_code == 400
        assert c.post("/custom-llm/update", json={"model_group_name": "no",
                                                  "api_key": "k"}).status_code == 404
        # the other dialect's paths do not exist here
        assert c.post("/llm-models/list").status_code == 404


def test_other_dialect_and_unknown_paths_404_and_non_post_405(client):
    for path in ("/custom-llm/list", "/custom-llm/register", "/nope", "/llm-models/nope"):
        r = client.post(path, json={})
        assert r.status_code == 404 and r.json()["status"] == "error", path
    r = client.get("/llm-models/list")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert client.get("/character/list").json() == {"ERROR": "Method GET not allowed; use POST"}


# --- characters -----------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["llm-models", "custom-llm"])
def test_character_read_endpoints(make_emu, dialect):
    emu = make_emu(dialect=dialect)
    with client_for(emu) as c:
        chars = c.post("/character/list").json()["characters"]
        assert [ch["character_id"] for ch in chars] == ["c1", "c2"]
        first = chars[0]
        assert {"character_id", "character_name", "user_id", "voice_type", "timestamp",
                "backstory"} <= set(first)
        assert first["personalised_prompt_config"] == {"MODEL": "m-alpha", "PROMPT": "",
                                                       "VERBOSITY": 2, "TEMPERATURE": 0.4}
        assert c.post("/character/get", json={"charID": "c1"}).json() == first

        models = c.post("/character/getSupportedModel").json()["models"]
        by_name = {m["model_group_name"]: m for m in models}
        assert "gpt-4o" in by_name and "m-alpha" in by_name
        assert by_name["m-alpha"]["display_name"] == "Alpha"
        assert by_name["gpt-4o"]["reasoning"] == {"levels": [], "supports_auto": False,
                                                  "default": None}


def test_character_update(emu, client):
    r = client.post("/character/update", json={"charID": "c1", "model_group_name": "m-beta",
                                               "temperature": 0.9})
    assert (r.status_code, r.json()) == (200, {"STATUS": "SUCCESS"})
    assert emu.characters()["c1"] == {"character_id": "c1", "character_name": "One",
                                      "model_group_name": "m-beta", "temperature": 0.9}
    assert client.post("/character/update", json={"charID": "c1", "model_group_name":
                                                  "claude-4-sonnet"}).status_code == 200
    assert client.post("/character/update", json={"charID": "c1", "temperature": 0}).status_code == 200
    assert emu.characters()["c1"]["model_group_name"] == "claude-4-sonnet"
    assert len(emu.writes()) == 3


@pytest.mark.parametrize("body, message", [
    ({"charID": "c1"}, None),
    ({"charID": "c1", "temperature": 1.5}, "temperature"),
    ({"charID": "c1", "temperature": -0.1}, "temperature"),
    ({"charID": "c1", "temperature": True}, "temperature"),
    ({"charID": "c1", "temperature": "0.5"}, "temperature"),
    ({"charID": "c1", "model_group_name": "ghost-model"}, "Model 'ghost-model' is not available"),
    ({"charID": "c1", "model_group_name": "ghost", "temperature": 0.2}, "not available"),
    ({"temperature": 0.2}, "charID"),
])
def test_character_update_refusals(emu, client, body, message):
    r = client.post("/character/update", json=body)
    assert r.status_code == 400 and set(r.json()) == {"ERROR"}
    if message:
        assert message in r.json()["ERROR"]
    assert emu.characters()["c1"]["temperature"] == 0.4  # nothing half-applied
    assert emu.writes() == []


@pytest.mark.parametrize("path", ["/character/update", "/character/get"])
def test_unknown_character(client, path):
    r = client.post(path, json={"charID": "zzz", "temperature": 0.1})
    assert r.status_code == 400
    assert r.json()["ERROR"] == "Could not fetch character details for zzz"
    assert UUID.match(r.json()["Reference ID"])


# --- auth and bodies ------------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_auth_envelopes(emu, key):
    with client_for(emu, key) as c:
        r = c.post("/llm-models/list")
        assert r.status_code == 401
        assert r.json()["status"] == "error"
        assert r.json()["message"] == "Unauthorized: missing or invalid CONVAI-API-KEY"
        assert UUID.match(r.json()["transactionID"])
        r = c.post("/character/update", json={"charID": "c1", "temperature": 0.1})
        assert (r.status_code, r.json()) == (401, {"API_ERROR": "Invalid API key provided."})
    assert emu.characters()["c1"]["temperature"] == 0.4


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"NaN"])
def test_bad_bodies_are_400_in_each_envelope(emu, client, content):
    r = client.post("/llm-models/register", content=content)
    assert r.status_code == 400 and r.json()["status"] == "error"
    r = client.post("/character/update", content=content)
    assert r.status_code == 400 and "ERROR" in r.json()
    assert emu.requests[-1].body is None


# --- invariants and the request log -----------------------------------------------------------

def test_deregister_in_use_succeeds_and_records_orphans(emu, client):
    r = client.post("/llm-models/deregister", json={"model_group_name": "m-alpha"})
    assert r.status_code == 200
    seq = emu.requests[-1].seq
    assert emu.orphan_events == [OrphanEvent(seq, "/llm-models/deregister", "c1", "m-alpha")]


def test_safe_sequence_records_no_orphans(emu, client):
    assert client.post("/character/update", json={"charID": "c1",
                                                   "model_group_name": "m-beta"}).status_code == 200
    assert client.post("/llm-models/deregister",
                       json={"model_group_name": "m-alpha"}).status_code == 200
    assert emu.orphan_events == [] and len(emu.writes()) == 2


def test_seeded_orphans_do_not_count_but_new_ones_do(make_emu):
    seed = {"models": SEED["models"], "characters": SEED["characters"] + [
        {"character_id": "c3", "character_name": "Lost", "model_group_name": "gone",
         "temperature": 0.5}]}
    emu = make_emu(seed=seed)
    with client_for(emu) as c:
        c.post("/character/update", json={"charID": "c3", "temperature": 0.6})
        assert emu.orphan_events == []
        c.post("/llm-models/deregister", json={"model_group_name": "m-alpha"})
    assert [e.character_id for e in emu.orphan_events] == ["c1"]


def test_orphaning_again_after_a_reregister_counts_again(emu, client):
    client.post("/llm-models/deregister", json={"model_group_name": "m-alpha"})
    client.post("/llm-models/register", json=register_body("m-alpha"))
    assert client.post("/character/update", json={"charID": "c2", "model_group_name":
                                                  "m-alpha"}).status_code == 200
    client.post("/llm-models/deregister", json={"model_group_name": "m-alpha"})
    events = [(e.character_id, e.model_group_name) for e in emu.orphan_events]
    assert events == [("c1", "m-alpha"), ("c1", "m-alpha"), ("c2", "m-alpha")]


def test_api_key_never_leaves_the_emulator(make_emu):
    for dialect in ("llm-models", "custom-llm"):
        emu = make_emu(dialect=dialect)
        with client_for(emu) as c:
            body = register_body("m-x", base_url="https://x/v1")
            texts = [c.post(f"/{dialect}/register", json=body).text,
                     c.post(f"/{dialect}/update", json={"model_group_name": "m-x",
                                                        "api_key": "sk-upd-SECRET"}).text,
                     c.post(f"/{dialect}/list").text,
                     c.post("/character/getSupportedModel").text]
        assert emu.models()["m-x"]["api_key"] == "sk-upd-SECRET"  # really stored
        assert not any("SECRET" in t for t in texts)
        assert "SECRET" not in repr(emu.requests)
        assert emu.requests[0].body["api_key"] == "(sensitive)"


def test_log_snapshot_and_clear(emu, client):
    client.post("/llm-models/list")
    client.post("/llm-models/deregister", json={"model_group_name": "m-alpha"})
    log = emu.requests
    assert [(r.seq, r.path, r.status, r.committed, r.fault) for r in log] == [
        (1, "/llm-models/list", 200, False, None),
        (2, "/llm-models/deregister", 200, True, None)]
    assert isinstance(log[0], RecordedRequest) and log[0].body is None
    emu.clear_log()
    assert emu.requests == [] and emu.orphan_events == [] and emu.writes() == []


def test_load_seed_replaces_state_and_validates(emu):
    emu.load_seed({"models": [], "characters": []})
    assert emu.models() == {} and emu.characters() == {}
    with pytest.raises(ConvaiSyncError, match="built-in"):
        emu.load_seed({"models": [{**SEED["models"][0], "model_group_name": "gpt-4o"}]})


def test_extra_builtins_are_usable(make_emu):
    emu = make_emu(extra_builtins=["brand-new-code"])
    with client_for(emu) as c:
        assert c.post("/character/update", json={"charID": "c1", "model_group_name":
                                                 "brand-new-code"}).status_code == 200
        assert c.post("/llm-models/register",
                      json=register_body("brand-new-code")).status_code == 400


# --- faults ---------------------------------------------------------------------------------

def _run_sequence(emu: Emulator, n: int = 30) -> list[tuple[int | None, str | None]]:
    with client_for(emu) as c:
        for i in range(n):
            try:
                c.post("/character/update", json={"charID": "c1", "temperature": (i % 10) / 10})
            except httpx.TransportError:
                pass
    return [(r.status, r.fault) for r in emu.requests]


def test_same_fault_seed_same_fault_sequence(make_emu):
    first = _run_sequence(make_emu(faults=Faults(rate=0.3, after_commit=0.3, seed=7)))
    second = _run_sequence(make_emu(faults=Faults(rate=0.3, after_commit=0.3, seed=7)))
    other = _run_sequence(make_emu(faults=Faults(rate=0.3, after_commit=0.3, seed=8)))
    assert first == second
    assert first != other
    assert any(f and f.startswith("before:") for _, f in first)
    assert any(f and f.startswith("after:") for _, f in first)


def test_before_faults_change_nothing_and_carry_retry_after(make_emu):
    emu = make_emu(faults=Faults(rate=1.0, seed=3, retry_after=0.05))
    seen_429 = False
    with client_for(emu) as c:
        for _ in range(25):
            try:
                r = c.post("/llm-models/register", json=register_body())
            except httpx.TransportError:
                continue
            assert r.status_code in (429, 500, 502, 503) and r.json()["status"] == "error"
            if r.status_code == 429:
                seen_429 = True
                assert r.headers["Retry-After"] == "0.05"
    assert seen_429 and "m-new" not in emu.models() and emu.writes() == []


def test_after_commit_fault_really_commits(make_emu):
    emu = make_emu(faults=Faults(after_commit=1.0, seed=1))
    with client_for(emu) as c:
        try:
            r = c.post("/llm-models/register", json=register_body())
            assert r.status_code in (500, 502)
        except httpx.TransportError:
            pass
        assert "m-new" in emu.models()
        (rec,) = emu.requests
        assert rec.committed and rec.fault.startswith("after:")
        emu.faults = Faults()  # replacing faults takes effect at once
        names = [m["model_group_name"] for m in c.post("/llm-models/list").json()["models"]]
        assert "m-new" in names
    assert emu.requests[-1].fault is None


def test_dropped_connections_really_drop(make_emu):
    emu = make_emu(faults=Faults(rate=1.0, seed=11))
    outcomes = []
    with client_for(emu) as c:
        for _ in range(30):
            try:
                outcomes.append(c.post("/llm-models/list").status_code)
            except httpx.RemoteProtocolError:
                outcomes.append(None)
    assert outcomes == [r.status for r in emu.requests]
    drops = [r for r in emu.requests if r.fault == "before:drop"]
    assert drops and all(r.status is None for r in drops)


def test_max_inflight_answers_429_under_load(make_emu):
    emu = make_emu(faults=Faults(max_inflight=2, latency_ms=150, retry_after=0.05))
    barrier = threading.Barrier(8)

    def call(_):
        with client_for(emu) as c:
            barrier.wait()
            return c.post("/llm-models/list")

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    assert statuses.count(200) <= 4  # bounded by the limit, not by the load
    for r in responses:
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "0.05" and r.json()["status"] == "error"
    assert any(r.fault == "rate-limit" for r in emu.requests)


def test_latency_overlaps_across_concurrent_requests(make_emu):
    emu = make_emu(faults=Faults(latency_ms=100))
    with client_for(emu) as c:
        c.post("/llm-models/list")  # warm up
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: c.post("/llm-models/list").status_code, range(8)))
        elapsed = time.perf_counter() - start
    assert codes == [200] * 8
    assert 0.1 <= elapsed < 0.4, elapsed


def test_faults_validate_their_values():
    with pytest.raises(ValueError):
        Faults(rate=1.5)
    with pytest.raises(ValueError):
        Faults(max_inflight=0)


# --- transport -----------------------------------------------------------------------------

def test_keep_alive_one_connection_serves_many_fast_requests(emu):
    parts = urlsplit(emu.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    headers = {"CONVAI-API-KEY": KEY, "Content-Type": "application/json"}
    body = json.dumps({"charID": "c1"})
    conn.request("POST", "/character/get", body, headers)
    assert conn.getresponse().read()
    sock = conn.sock
    start = time.perf_counter()
    for _ in range(100):
        conn.request("POST", "/character/get", body, headers)
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["character_id"] == "c1"
        assert conn.sock is sock  # not closed and reopened
    elapsed = time.perf_counter() - start
    conn.close()
    assert elapsed < 1.0, elapsed  # 40 ms Nagle stalls would take 4 s
    assert emu.connections == 1


def test_stop_closes_keep_alive_connections(make_emu):
    emu = make_emu()
    with client_for(emu) as c:
        assert c.post("/llm-models/list").status_code == 200
        emu.stop()
        with pytest.raises(httpx.TransportError):
            c.post("/llm-models/list")


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConvaiSyncError, match=f"port {port} is already in use"):
            Emulator().start(port=port)


# --- seeds ----------------------------------------------------------------------------------

def test_demo_seed_is_the_drifted_account():
    seed = demo_seed()
    assert [m["model_group_name"] for m in seed["models"]] == [
        "studio-turbo", "studio-llama-70b", "legacy-mixtral"]
    chars = {c["character_name"]: (c["model_group_name"], c["temperature"])
             for c in seed["characters"]}
    assert chars["Guide Ila"] == ("gpt-4o", 0.7) and chars["Old Sage"] == ("legacy-mixtral", 0.5)
    assert len(chars) == 7 and Emulator(seed=seed).orphan_events == []


def test_seed_files_yaml_and_json(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SEED))
    assert load_seed_file(tmp_path / "s.json")["models"][1]["is_uncensored"] is True
    (tmp_path / "s.yaml").write_text("dialect: custom-llm\nmodels: []\n")
    assert load_seed_file(tmp_path / "s.yaml") == {"dialect": "custom-llm", "models": [],
                                                   "characters": []}


@pytest.mark.parametrize("name, text, message", [
    ("missing.yaml", None, "seed file not found"),
    ("bad.yaml", "models: [\n  {a: 1\n", "invalid YAML"),
    ("bad.json", '{"models": [}', "invalid JSON"),
    ("list.yaml", "- 1\n", "expected a mapping"),
    ("typo.yaml", "modles: []\n", "unknown key 'modles'"),
    ("temp.yaml", "characters: [{character_id: a, character_name: A, model_group_name: gpt-4o,"
                  " temperature: 3}]\n", "temperature"),
    ("dup.yaml", "models: [{model_group_name: a, model_name: b, base_url: u, api_key: k},"
                 " {model_group_name: a, model_name: b, base_url: u, api_key: k}]\n", "duplicate"),
])
def test_bad_seed_files(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConvaiSyncError) as info:
        load_seed_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


# --- CLI ------------------------------------------------------------------------------------

def test_cli_bad_seed_is_one_clean_line(tmp_path):
    bad = tmp_path / "seed.yaml"
    bad.write_text("models: nope\n")
    result = CliRunner().invoke(emulator_command, ["--seed", str(bad), "--port", "0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(bad) in lines[0]
    assert "Traceback" not in result.output and not isinstance(result.exception, ConvaiSyncError)


def test_cli_bad_option_is_a_usage_error():
    result = CliRunner().invoke(emulator_command, ["--dialect", "soap"])
    assert result.exit_code == 2 and "Invalid value" in result.output


@pytest.mark.parametrize("signum,lean", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                         (signal.SIGTERM, True)])
def test_cli_serves_until_stopped(signum, lean):
    env = {**os.environ, "CONVAI_API_KEY": "cli-key"}
    flags = ["--lean-character-list"] if lean else []
    proc = subprocess.Popen([sys.executable, "-m", "convai_sync.emulator", "--port", "0", *flags],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        url, seen = None, []
        deadline = time.monotonic() + 10
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"CONVAI_API_URL=(http://\S+)", line)
            url = match and match.group(1)
        assert url, seen
        assert "cli-key" not in "".join(seen)  # a key from the environment is not echoed
        r = httpx.post(url + "/llm-models/list", headers={"CONVAI-API-KEY": "cli-key"}, verify=False)
        assert r.status_code == 200 and r.json()["count"] == 3  # the demo seed
        listed = httpx.post(url + "/character/list", headers={"CONVAI-API-KEY": "cli-key"}, verify=False).json()
        with_config = ["personalised_prompt_config" in c for c in listed["characters"]]
        assert with_config and set(with_config) == {not lean}
        proc.send_signal(signum)
        assert proc.wait(timeout=5) == 0
        rest = proc.stderr.read()
        assert "Emulator stopped." in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("case", ["port in use", "bad seed", "missing seed"])
def test_convai_sync_emulator_exits_1_when_it_cannot_start(case, run, tmp_path, busy_port):
    """Through the real entry point (main), as the console script runs it: a
    ctx.exit(1) under standalone_mode=False must not become exit 0."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [oops\n")
    args = {"port in use": ["--port", str(busy_port)],
            "bad seed": ["--port", "0", "--seed", str(bad)],
            "missing seed": ["--port", "0", "--seed", str(tmp_path / "absent.yaml")]}[case]
    out = run("emulator", *args)
    assert out.code == 1, out.output
    assert out.stderr.startswith("Error: ") and "listening" not in out.output
    if case == "port in use":
        assert "--port 0" in out.stderr
