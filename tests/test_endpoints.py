"""Endpoint checks over real HTTP against the OpenAI-compatible stub: `check`
(every mode, concurrency, timeouts), apply's refusal to bind onto a failing
endpoint (nothing written; --skip-check, --no-endpoint-check), `drift
--check-endpoints` in text, JSON and markdown, every platform's hook, and no
key in any output."""
from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CANARIES, EXAMPLES, Result, assert_no_secret
from convai_sync.emulator import Emulator
from convai_sync.emulator.base import Reply, Request
from convai_sync.emulator.openai_stub import OpenAIStub

GATEWAY, VLLM = CANARIES["STUDIO_GATEWAY_KEY"], CANARIES["STUDIO_VLLM_KEY"]
MARA = "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11"
OREN = "8b1d4e7a-2c3f-4e9b-8d6a-7f0e1c2b3a45"


@pytest.fixture(autouse=True)
def checks_on(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.delenv("CONVAI_SYNC_NO_ENDPOINT_CHECK", raising=False)


@pytest.fixture
def make_stub(serve: Callable[[Any], Any]) -> Callable[..., OpenAIStub]:
    def make(cls: type[OpenAIStub] = OpenAIStub, **kw: Any) -> OpenAIStub:
        kw.setdefault("keys", {GATEWAY, VLLM})
        kw.setdefault("slow_ms", 400)
        return serve(cls(**kw))

    return make


@pytest.fixture
def stub(make_stub: Callable[..., OpenAIStub]) -> OpenAIStub:
    return make_stub(models={"gpt-4o-mini", "m-new"})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model(name: str, url: str, upstream: str = "gpt-4o-mini", var: str = "STUDIO_GATEWAY_KEY",
          **extra: Any) -> dict[str, Any]:
    return {"model_group_name": name, "model_name": upstream, "base_url": url,
            "api_key": "${" + var + "}", **extra}


def write(tmp_path: Path, models: list[dict], characters: list[dict] | None = None,
          name: str = "m.yaml") -> str:
    path = tmp_path / name
    doc = {"version": 1, "settings": {"fallback_model": "gpt-4o-mini"}, "models": models,
           "characters": characters or []}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def lines_of(result: Result) -> dict[str, str]:
    """model -> its line of `check` output."""
    out = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if line.startswith("  ") and parts:
            out[parts[0]] = line
    return out


# -- check --------------------------------------------------------------------------

def test_check_names_each_mode_and_why(run: Callable[..., Result], make_emulator: Callable[..., Emulator],
                                       stub: OpenAIStub, tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, [
        model("fine", f"{stub.url}/v1"),
        model("sluggish", f"{stub.url}/slow/v1"),
        model("crashing", f"{stub.url}/down/v1"),
        model("closed", f"http://127.0.0.1:{closed_port()}/v1"),
        model("badkey", f"{stub.url}/wrong-key/v1"),
        model("nomodel", f"{stub.url}/v1", upstream="gpt-9"),
        model("nopath", f"{stub.url}/nothing-here", upstream="gpt-4o-mini"),
    ])
    stub.modes["/nothing-here"] = "unknown-model"
    r = run("check", "-f", m, "--api-url", emu.url, "--slow-after", "0.2")
    assert r.code == 1, r.output
    lines = lines_of(r)
    assert "Account: Convai at" in r.stdout and "key accepted (read 3 models, 7 characters)" in r.stdout
    assert " ok " in lines["fine"] and "serves gpt-4o-mini at" in lines["fine"]
    assert " slow " in lines["sluggish"] and "over 200 ms" in lines["sluggish"]
    assert " failing " in lines["crashing"] and "HTTP 500" in lines["crashing"]
    assert lines["crashing"].endswith(f"({m}:13)") and f"({m}:" not in lines["fine"]
    assert " unreachable " in lines["closed"] and "connection refused" in lines["closed"]
    assert " key refused " in lines["badkey"] and "${STUDIO_GATEWAY_KEY} was refused" in lines["badkey"]
    assert [q.path for q in stub.requests if q.path.startswith("/wrong-key")] == ["/wrong-key/v1/models"]
    assert " model not served " in lines["nomodel"] and "'gpt-9'" in lines["nomodel"]
    assert "it lists: gpt-4o-mini, m-new" in lines["nomodel"]
    assert " model not served " in lines["nopath"]
    assert "7 endpoints: 1 ok, 1 slow, 1 failing, 1 unreachable, 1 key refused, 2 model not served." \
        in r.stdout
    assert_no_secret(r.output)


def test_check_exits_0_when_every_endpoint_and_the_account_are_healthy(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, [model("a", f"{stub.url}/v1"), model("b", f"{stub.url}/v1", "m-new", "STUDIO_VLLM_KEY")])
    r = run("check", "-f", m, "--api-url", emu.url)
    assert r.code == 0, r.output
    assert "2 endpoints: 2 ok." in r.stdout
    # the platform's call: the model's own key and upstream name, one token
    chats = [q.body for q in stub.requests if q.path.endswith("/chat/completions")]
    assert sorted(c["model"] for c in chats) == ["gpt-4o-mini", "m-new"]
    assert all(c["max_tokens"] == 1 for c in chats)
    doc = json.loads(run("check", "-f", m, "--api-url", emu.url, "--format", "json").stdout)
    assert doc["healthy"] is True and doc["account"]["ok"] is True
    assert [(e["model"], e["status"], e["upstream_model"]) for e in doc["endpoints"]] == [
        ("a", "ok", "gpt-4o-mini"), ("b", "ok", "m-new")]


class WrongBaseUrl(OpenAIStub):
    """Not an OpenAI-compatible API under this URL: `status` to everything (404: no
    such routes; 200: a web page, as a site's front page answers)."""

    status = 404

    def handle(self, request: Request) -> Reply:
        return Reply(self.status, {"detail": "Not Found"} if self.status == 404 else "<html>Hi</html>")


@pytest.mark.parametrize("status, why", [(404, "neither GET /models nor POST /chat/completions"),
                                         (200, "answered HTTP 200 but not with a chat completion")])
def test_a_base_url_that_is_no_openai_api_is_failing_and_asks_whether_it_is_right(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator],
        make_stub: Callable[..., OpenAIStub], tmp_path: Path, status: int, why: str) -> None:
    stub = make_stub(type("Stub", (WrongBaseUrl,), {"status": status}))
    r = run("check", "-f", write(tmp_path, [model("bare", stub.url)]), "--api-url", make_emulator().url)
    assert r.code == 1
    assert " failing " in lines_of(r)["bare"] and why in r.stdout and "does it need /v1" in r.stdout


def test_a_url_httpx_cannot_use_is_failing_not_a_crash(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    m = write(tmp_path, [model("typo", "http://ex\u00e4mple..com/v1")])
    r = run("check", "-f", m, "--api-url", make_emulator().url)
    assert r.code == 1 and "internal error" not in r.output
    assert " failing " in lines_of(r)["typo"] and "is not a usable URL" in r.stdout


class BadRequests(OpenAIStub):
    """A proxy that answers 400 where OpenAI answers 404, with or without its code."""

    code: str | None = "model_not_found"

    def _chat(self, request: Request, model: str, mode: str) -> Reply:
        if model == "gpt-4o-mini":
            return Reply(400, {"error": {"message": "max_tokens is too small", "code": None}})
        reply = super()._chat(request, model, mode)
        if reply.status == 404:
            reply.status, reply.body["error"]["code"] = 400, self.code
        return reply


@pytest.mark.parametrize("code", ["model_not_found", None])
def test_a_400_about_the_model_is_model_not_served_and_any_other_400_is_failing(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator],
        make_stub: Callable[..., OpenAIStub], tmp_path: Path, code: str | None) -> None:
    """Without OpenAI's code, a 400 is about the model when /models does not list it."""
    stub = make_stub(type("Stub", (BadRequests,), {"code": code}), models={"gpt-4o-mini"})
    m = write(tmp_path, [model("listed", f"{stub.url}/v1"), model("unlisted", f"{stub.url}/v1", "gpt-9")])
    r = run("check", "-f", m, "--api-url", make_emulator().url)
    lines = lines_of(r)
    assert r.code == 1
    assert " model not served " in lines["unlisted"] and "HTTP 400" in lines["unlisted"]
    assert " failing " in lines["listed"] and "max_tokens is too small" in lines["listed"]


def test_a_slow_endpoint_fails_check_but_only_past_the_threshold(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, [model("sluggish", f"{stub.url}/slow/v1")])
    assert run("check", "-f", m, "--api-url", emu.url, "--slow-after", "5").code == 0
    assert run("check", "-f", m, "--api-url", emu.url, "--slow-after", "0.1").code == 1


def test_no_answer_within_the_timeout_is_unreachable(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator],
        make_stub: Callable[..., OpenAIStub], tmp_path: Path) -> None:
    stub = make_stub(slow_ms=3000)
    m = write(tmp_path, [model("hung", f"{stub.url}/slow/v1")])
    started = time.monotonic()
    r = run("check", "-f", m, "--api-url", make_emulator().url, "--endpoint-timeout", "0.3")
    assert r.code == 1
    assert " unreachable " in lines_of(r)["hung"] and "no answer within 0.3 s" in r.stdout
    assert time.monotonic() - started < 2.5


def test_endpoints_are_checked_concurrently(run: Callable[..., Result], make_emulator: Callable[..., Emulator],
                                            make_stub: Callable[..., OpenAIStub], tmp_path: Path) -> None:
    stub = make_stub(slow_ms=300)
    m = write(tmp_path, [model(f"m{i}", f"{stub.url}/slow/v1") for i in range(12)])
    emu = make_emulator()
    started = time.monotonic()
    r = run("check", "-f", m, "--api-url", emu.url, "--slow-after", "5")
    elapsed = time.monotonic() - started
    assert r.code == 0, r.output
    assert elapsed < 3.0, f"12 endpoints at 2 x 300 ms took {elapsed:.2f} s: not concurrent"


def test_an_unset_key_is_not_checked_and_fails_check(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    m = write(tmp_path, [model("a", f"{stub.url}/v1", var="NOT_SET_ANYWHERE")])
    r = run("check", "-f", m, "--api-url", make_emulator().url)
    assert r.code == 1
    assert " not checked " in lines_of(r)["a"] and "${NOT_SET_ANYWHERE} is not set" in r.stdout
    assert stub.requests == []


def test_a_refused_account_key_fails_check_and_endpoints_are_still_checked(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    monkeypatch.setenv("CONVAI_API_KEY", "wrong-account-key-4242")
    m = write(tmp_path, [model("a", f"{stub.url}/v1")])
    r = run("check", "-f", m, "--api-url", emu.url)
    assert r.code == 1
    assert "Account: Convai: failed:" in r.stdout and "HTTP 401" in r.stdout
    assert " ok " in lines_of(r)["a"]
    assert "wrong-account-key-4242" not in r.output
    doc = json.loads(run("check", "-f", m, "--api-url", emu.url, "--format", "json").stdout)
    assert doc["healthy"] is False and doc["account"]["ok"] is False
    assert [e["status"] for e in doc["endpoints"]] == ["ok"]


class EchoingStub(OpenAIStub):
    """A careless endpoint: every error quotes the Authorization header it got."""

    def handle(self, request: Request) -> Reply:
        reply = super().handle(request)
        if reply.status != 200:
            reply.body["error"]["message"] += f" (you sent {request.headers.get('Authorization')})"
        return reply


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(modes=st.lists(st.sampled_from(["ok", "down", "wrong-key", "unknown-model", "closed"]),
                      min_size=1, max_size=4),
       formats=st.sampled_from(["text", "json", "markdown"]))
def test_no_key_in_any_output_of_check_or_drift_whatever_the_endpoints_answer(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator],
        make_stub: Callable[..., OpenAIStub], tmp_path: Path, modes: list[str], formats: str) -> None:
    stub = make_stub(EchoingStub, keys={"someone-elses-key"})  # every key refused, and quoted
    port = closed_port()
    urls = {"closed": f"http://127.0.0.1:{port}/v1"}
    m = write(tmp_path, [model(f"m{i}", urls.get(mode, f"{stub.url}/{mode}/v1"),
                               var=("STUDIO_GATEWAY_KEY", "STUDIO_VLLM_KEY")[i % 2])
                         for i, mode in enumerate(modes)])
    emu = make_emulator()
    check_format = "json" if formats == "json" else "text"
    results = [run("check", "-f", m, "--api-url", emu.url, "-vv", "--format", check_format),
               run("drift", "-f", m, "--api-url", emu.url, "--check-endpoints", "--format", formats),
               run("apply", "-f", m, "--api-url", emu.url, "--auto-approve")]
    assert [r.code for r in results] == [1, 2, 1]
    assert_no_secret(*(r.output for r in results))
    assert emu.writes() == []


def test_the_echoing_stub_really_quotes_the_key(make_stub: Callable[..., OpenAIStub]) -> None:
    """The property above is only worth something if the key was in play."""
    import httpx
    stub = make_stub(EchoingStub, keys={"someone-elses-key"})
    reply = httpx.get(f"{stub.url}/v1/models", headers={"Authorization": f"Bearer {GATEWAY}"}, verify=False)
    assert GATEWAY in reply.text


# -- apply: never bind onto a failing endpoint ---------------------------------------

def demo_models(stub: OpenAIStub, turbo_url: str = "https://llm-gateway.example-studio.com/v1",
                new_mode: str = "v1") -> list[dict]:
    """studio-turbo as the demo account has it (unless turbo_url changes), and a new model."""
    return [model("studio-turbo", turbo_url, display_name="Turbo (Private)"),
            model("edge-new", f"{stub.url}/{new_mode}", "m-new", "STUDIO_VLLM_KEY")]


def test_apply_refuses_to_move_characters_onto_a_failing_endpoint_and_writes_nothing(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub, new_mode="down/v1"),
              [{"char_id": MARA, "model_group_name": "edge-new"},
               {"char_id": OREN, "model_group_name": "gpt-4o", "temperature": 0.1}])
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve")
    assert r.code == 1
    assert emu.writes() == []  # not even the new model was registered
    assert "Refusing to apply" in r.stderr and "Nothing was written." in r.stderr
    assert f"{m}:" in r.stderr and "model 'edge-new' is failing" in r.stderr and "HTTP 500" in r.stderr
    assert "--skip-check edge-new" in r.stderr
    assert "Phase 1/" in r.stdout  # the plan was shown first
    assert emu.characters()[MARA]["model_group_name"] == "studio-turbo"


@pytest.mark.parametrize("flag", [("--skip-check", "edge-new"), ("--no-endpoint-check",)])
def test_a_skip_flag_binds_onto_an_endpoint_known_to_be_down(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path, flag: tuple[str, ...]) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub, new_mode="down/v1"),
              [{"char_id": MARA, "model_group_name": "edge-new"}])
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve", *flag)
    assert r.code == 0, r.output
    assert emu.characters()[MARA]["model_group_name"] == "edge-new"
    assert not any(q.path.startswith("/down") for q in stub.requests)


def test_a_slow_endpoint_does_not_refuse_but_is_noted(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub, new_mode="slow/v1"),
              [{"char_id": MARA, "model_group_name": "edge-new"}])
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve", "--slow-after", "0.1")
    assert r.code == 0, r.output
    assert "Note: model 'edge-new' endpoint slow:" in r.stderr
    assert emu.characters()[MARA]["model_group_name"] == "edge-new"


def test_a_saved_plan_without_its_manifest_says_nothing_was_checked(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub), [{"char_id": MARA, "model_group_name": "edge-new"}])
    plan_file = str(tmp_path / "plan.json")
    assert run("plan", "-f", m, "--api-url", emu.url, "--out", plan_file).code == 0
    Path(m).unlink()
    r = run("apply", plan_file, "--api-url", emu.url, "--auto-approve")
    assert r.code == 0, r.output
    assert "the manifest is not here, so no endpoint was checked" in r.stderr
    assert stub.requests == []


def test_skip_check_of_a_model_the_manifest_lacks_is_an_error(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub), [{"char_id": MARA, "model_group_name": "edge-new"}])
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve", "--skip-check", "edge-nwe")
    assert r.code == 1 and emu.writes() == []
    assert "--skip-check edge-nwe" in r.stderr and "declares no model 'edge-nwe'" in r.stderr


def test_apply_checks_only_endpoints_characters_move_onto(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    """studio-turbo stays as it is (at an unreachable example URL) and only a
    temperature changes on it: not checked. The new model is, and answers."""
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub),
              [{"char_id": MARA, "model_group_name": "studio-turbo", "temperature": 0.9},
               {"char_id": OREN, "model_group_name": "edge-new"}])
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve")
    assert r.code == 0, r.output
    assert "Checked the endpoints characters will move onto. 1 endpoint: 1 ok." in r.stderr
    assert [q.body["model"] for q in stub.requests if q.path.endswith("/chat/completions")] == ["m-new"]
    assert emu.characters()[OREN]["model_group_name"] == "edge-new"


def test_changing_a_models_url_checks_the_new_endpoint(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub, turbo_url=f"{stub.url}/wrong-key/v1")[:1])
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve")
    assert r.code == 1 and emu.writes() == []
    assert "model 'studio-turbo' is key refused" in r.stderr


@pytest.mark.parametrize("change", ["new model, nobody on it yet", "model_name (a replace)",
                                    "key rotation"])
def test_every_new_or_changed_endpoint_is_checked(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path, change: str) -> None:
    emu = make_emulator()
    turbo = model("studio-turbo", "https://llm-gateway.example-studio.com/v1",
                  display_name="Turbo (Private)", api_key_version=1)
    converge(run, write(tmp_path, [turbo]), emu)  # one file name: one state file
    emu.clear_log()
    if change == "new model, nobody on it yet":
        models = [turbo, model("idle", f"{stub.url}/down/v1")]
    elif change == "model_name (a replace)":  # of a model nobody is on
        idle = model("idle", f"{stub.url}/v1")
        converge(run, write(tmp_path, [turbo, idle]), emu)
        emu.clear_log()
        models = [turbo, {**idle, "model_name": "gpt-9"}]
    else:  # the demo's URL cannot be reached: the rotated key would be sent there
        models = [{**turbo, "api_key_version": 2}]
    r = run("apply", "-f", write(tmp_path, models), "--api-url", emu.url, "--auto-approve")
    assert r.code == 1, r.output
    assert "Refusing to apply" in r.stderr and emu.writes() == []


def test_a_saved_plan_is_refused_too(run: Callable[..., Result], make_emulator: Callable[..., Emulator],
                                     stub: OpenAIStub, tmp_path: Path) -> None:
    emu = make_emulator()
    m = write(tmp_path, demo_models(stub, new_mode="unknown-model/v1"),
              [{"char_id": MARA, "model_group_name": "edge-new"}])
    plan_file = str(tmp_path / "plan.json")
    assert run("plan", "-f", m, "--api-url", emu.url, "--out", plan_file).code == 0
    r = run("apply", plan_file, "--api-url", emu.url, "--auto-approve")
    assert r.code == 1 and emu.writes() == []
    assert "model 'edge-new' is model not served" in r.stderr


# -- drift --check-endpoints -------------------------------------------------------------

def in_sync_manifest(tmp_path: Path, url: str) -> str:
    """The demo's studio-turbo, with only its URL different (applied first)."""
    return write(tmp_path, [model("studio-turbo", url, display_name="Turbo (Private)")])


def converge(run: Callable[..., Result], m: str, emu: Emulator) -> None:
    r = run("apply", "-f", m, "--api-url", emu.url, "--auto-approve", "--no-endpoint-check")
    assert r.code == 0, r.output


def test_drift_with_a_failing_endpoint_exits_2_even_when_in_sync(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = in_sync_manifest(tmp_path, f"{stub.url}/down/v1")
    converge(run, m, emu)
    assert run("drift", "-f", m, "--api-url", emu.url).code == 0  # endpoints are opt-in
    text = run("drift", "-f", m, "--api-url", emu.url, "--check-endpoints")
    assert text.code == 2
    assert "In sync" in text.stdout and "Endpoints:" in text.stdout
    assert "studio-turbo" in text.stdout and "failing" in text.stdout
    doc = json.loads(run("drift", "-f", m, "--api-url", emu.url, "--check-endpoints",
                         "--format", "json").stdout)
    assert doc["in_sync"] is True and doc["endpoints_failed"] == 1
    [health] = doc["endpoints"]
    assert health["model"] == "studio-turbo" and health["status"] == "failing" and health["failed"]
    assert health["url"] == f"{stub.url}/down/v1" and health["upstream_model"] == "gpt-4o-mini"
    md = run("drift", "-f", m, "--api-url", emu.url, "--check-endpoints", "--format", "markdown")
    assert md.code == 2
    assert "**In sync, but an endpoint is failing.**" in md.stdout and "In sync.**" not in md.stdout
    assert "\U0001f534 **1 endpoint failing:** characters on it stop answering." in md.stdout
    assert "| `studio-turbo` | failing |" in md.stdout


def test_drift_with_healthy_endpoints_in_sync_exits_0(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], stub: OpenAIStub,
        tmp_path: Path) -> None:
    emu = make_emulator()
    m = in_sync_manifest(tmp_path, f"{stub.url}/v1")
    converge(run, m, emu)
    r = run("drift", "-f", m, "--api-url", emu.url, "--check-endpoints", "--format", "markdown")
    assert r.code == 0, r.output
    assert "**Endpoints:** 1 endpoint: 1 ok." in r.stdout
    assert json.loads(run("drift", "-f", m, "--api-url", emu.url, "--format", "json").stdout)[
        "endpoints"] is None


# -- every platform, and --emulator ----------------------------------------------------

@pytest.mark.parametrize("example", ["models.yaml", "langbot.yaml", "vapi.yaml"])
def test_check_with_the_emulator_answers_for_every_platform(run: Callable[..., Result], example: str) -> None:
    r = run("check", "-f", str(EXAMPLES / example), "--emulator")
    assert r.code == 0, r.output
    assert "key accepted" in r.stdout and re.search(r"(\d) endpoints: \1 ok\.", r.stdout)
    assert "https://vllm.example-studio.com/v1" in r.stdout  # the manifest's URLs, as written


@pytest.mark.parametrize("example, old, new, status", [
    ("models.yaml", "https://vllm.example-studio.com/v1", "https://down.example-studio.com/v1", "failing"),
    ("langbot.yaml", "name: gpt-4o-mini", "name: unknown-model", "model not served"),
    ("vapi.yaml", "https://vllm.example-studio.com/v1", "https://gw.example.com/wrong-key/v1", "key refused"),
])
def test_mode_words_in_a_url_or_model_pick_how_the_emulators_stub_answers(
        run: Callable[..., Result], tmp_path: Path, example: str, old: str, new: str, status: str) -> None:
    path = tmp_path / example
    path.write_text((EXAMPLES / example).read_text().replace(old, new))
    r = run("check", "-f", str(path), "--emulator")
    assert r.code == 1 and f" {status} " in r.stdout, r.output
    refused = run("apply", "-f", str(path), "--emulator", "--auto-approve")
    assert refused.code == 1 and "Refusing to apply" in refused.stderr


def test_langbot_requesters_that_are_not_openai_compatible_are_not_checked(
        run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "langbot.yaml"
    path.write_text((EXAMPLES / "langbot.yaml").read_text().replace(
        "    name: gpt-4o-mini", "    name: gpt-4o-mini\n    requester: anthropic-messages"))
    r = run("check", "-f", str(path), "--emulator")
    assert r.code == 1
    assert "requester anthropic-messages is not OpenAI-compatible" in lines_of(r)["turbo"]


def test_vapi_endpoints_come_from_the_models_url_and_model(run: Callable[..., Result], tmp_path: Path,
                                                          stub: OpenAIStub,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from convai_sync.providers.vapi.emulator import VapiEmulator, vapi_demo_seed
    monkeypatch.setenv("VAPI_API_KEY", "vapi-acct-key-1234")
    with VapiEmulator(api_key="vapi-acct-key-1234", seed=vapi_demo_seed()) as emu:
        path = tmp_path / "vapi.yaml"
        path.write_text((EXAMPLES / "vapi.yaml").read_text()
                        .replace("https://llm-gateway.example-studio.com/v1", f"{stub.url}/v1")
                        .replace("https://vllm.example-studio.com/v1", f"{stub.url}/down/v1"))
        r = run("apply", "-f", str(path), "--api-url", emu.url, "--auto-approve")
        assert r.code == 1 and emu.writes() == []
        assert "model 'studio-vllm' is failing" in r.stderr
        assert "studio-gateway" not in r.stderr.split("Refusing")[1]
