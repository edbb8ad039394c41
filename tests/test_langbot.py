"""The LangBot adapter end to end, through the real CLI and client over HTTP,
against both the LangBot emulator and a real LangBot 4.11.2 server (`real`
runs when .ci/install-langbot has installed it). The emulator is trusted only
where these agree. Each test builds its workspace through LangBot's own API."""
from __future__ import annotations

import copy
import json
import re
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from conftest import Result
from convai_sync.providers.langbot.emulator import LangBotEmulator

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "langbot_pipeline_config.json"
RUNNER = "plugin:langbot-team/LocalAgent/default"
KEYS = {"LB_GATEWAY_KEY": "sk-CANARY-lb-gateway-93ad1f", "LB_VLLM_KEY": "sk-CANARY-lb-vllm-5c7e20",
        "LB_NEW_KEY": "sk-CANARY-lb-new-e81b44"}
GATEWAY, VLLM = "http://127.0.0.1:9/gateway/v1", "http://127.0.0.1:9/vllm/v1"


class Workspace:
    """A LangBot workspace driven through its HTTP API (raw httpx, not our client)."""

    def __init__(self, url: str, key: str, emulator: LangBotEmulator | None = None):
        self.url, self.key, self.emulator = url, key, emulator
        self.http = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30, verify=False)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body if body is not None else None,
                              headers={"Content-Type": "application/json"})
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()["data"]

    def reset(self) -> None:
        for p in self.call("GET", "/api/v1/pipelines")["pipelines"]:
            self.call("DELETE", f"/api/v1/pipelines/{p['uuid']}")
        for m in self.call("GET", "/api/v1/provider/models/llm")["models"]:
            self.call("DELETE", f"/api/v1/provider/models/llm/{m['uuid']}")
        self.sweep_providers()

    def sweep_providers(self) -> None:
        for p in self.providers():
            if p["uuid"] != "00000000-0000-0000-0000-000000000000":
                self.call("DELETE", f"/api/v1/provider/providers/{p['uuid']}?cascade=true")

    def model(self, name: str, base_url: str, key: str, **extra: Any) -> str:
        body = {"name": name, "provider": {"requester": "openai-chat-completions",
                                           "base_url": base_url, "api_keys": [key]}, **extra}
        return self.call("POST", "/api/v1/provider/models/llm", body)["uuid"]

    def pipeline(self, name: str, model_uuid: str, prompt: str) -> str:
        config = json.loads(FIXTURE.read_text())
        config["ai"] = {"runner": {"id": RUNNER, "expire-time": 0}, "runner_config": {RUNNER: {
            "model": {"primary": model_uuid, "fallbacks": [], "reasoning": {}},
            "prompt": [{"role": "system", "content": prompt}], "knowledge-bases": []}}}
        return self.call("POST", "/api/v1/pipelines", {"name": name, "config": config})["uuid"]

    def models(self) -> dict[str, dict]:
        return {m["uuid"]: m for m in self.call("GET", "/api/v1/provider/models/llm")["models"]}

    def providers(self) -> list[dict]:
        return self.call("GET", "/api/v1/provider/providers")["providers"]

    def config(self, pipeline: str) -> dict:
        return self.call("GET", f"/api/v1/pipelines/{pipeline}")["pipeline"]["config"]


@pytest.fixture(params=["emulator", "real"])
def workspace(request: pytest.FixtureRequest) -> Iterator[Workspace]:
    if request.param == "real":
        server = request.getfixturevalue("real_langbot")
        ws = Workspace(server.url, server.key)
        ws.reset()
        yield ws
        ws.reset()
        return
    emu = LangBotEmulator(api_key="lb-test-key-4242", seed={"models": [], "pipelines": []})
    emu.start()
    try:
        yield Workspace(emu.url, "lb-test-key-4242", emu)
    finally:
        emu.stop()


@pytest.fixture
def lb(workspace: Workspace, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
       tmp_path: Path) -> "Harness":
    monkeypatch.setenv("LANGBOT_API_URL", workspace.url)
    monkeypatch.setenv("LANGBOT_API_KEY", workspace.key)
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    return Harness(workspace, run, tmp_path)


class Harness:
    def __init__(self, ws: Workspace, run: Callable[..., Result], tmp: Path):
        self.ws, self.run, self.tmp = ws, run, tmp
        self.manifest = tmp / "langbot.yaml"

    def write(self, text: str) -> str:
        self.manifest.write_text(text)
        return str(self.manifest)

    def cli(self, *args: str) -> Result:
        out = self.run(*args)
        everything = out.output + "".join(p.read_text() for p in self.tmp.glob("*.json"))
        for value in [*KEYS.values(), self.ws.key, "sk-old-"]:
            assert value not in everything, "a key reached the output or a file"
        return out


def demo(ws: Workspace) -> dict[str, str]:
    """A hand-managed workspace: three models (two on one host with different
    keys), four pipelines."""
    ids = {"turbo": ws.model("gpt-4o-mini", GATEWAY, KEYS["LB_GATEWAY_KEY"], abilities=["func_call"],
                             extra_args={"temperature": 0.4}),
           "llama": ws.model("llama-70b", VLLM, "sk-old-vllm-1", extra_args={"temperature": 0.5}),
           "mixtral": ws.model("mixtral", VLLM, "sk-old-vllm-2", extra_args={"temperature": 0.8})}
    ids["mara"] = ws.pipeline("Captain Mara", ids["turbo"], "You are Captain Mara.")
    ids["oren"] = ws.pipeline("Archivist Oren", ids["llama"], "You are Oren.")
    ids["pell"] = ws.pipeline("Trickster Pell", ids["mixtral"], "You are Pell, a trickster.")
    ids["ila"] = ws.pipeline("Guide Ila", ids["mixtral"], "You are Ila.")
    return ids


def manifest(ids: dict[str, str], prune: bool = True) -> str:
    return f"""version: 1
platform: langbot
settings:
  prune: {str(prune).lower()}
  fallback_model: turbo
models:
  - key: turbo
    name: gpt-4o-mini
    base_url: {GATEWAY}
    api_keys: ["${{LB_GATEWAY_KEY}}"]
    abilities: [func_call]
    extra_args: {{temperature: 0.4}}
  - key: llama
    name: llama-70b
    base_url: {VLLM}
    api_keys: ["${{LB_VLLM_KEY}}"]
    extra_args: {{temperature: 0.6, max_tokens: 256}}
  - key: qwen
    name: qwen-32b
    base_url: {VLLM}
    api_keys: ["${{LB_VLLM_KEY}}"]
pipelines:
  - uuid: {ids['oren']}
    model: qwen
  - uuid: {ids['pell']}
    model: llama
"""


def without_model(config: dict) -> dict:
    out = copy.deepcopy(config)
    out["ai"]["runner_config"][RUNNER]["model"]["primary"] = None
    return out


def test_plan_apply_converges_in_one_apply_and_replans_to_nothing(lb: Harness) -> None:
    ids = demo(lb.ws)
    path = lb.write(manifest(ids))
    plan = lb.cli("plan", "-f", path)
    assert plan.code == 0, plan.output
    assert "Plan: 1 to register, 1 to update, 1 to deregister, 3 pipelines to rebind." in plan.stdout
    assert re.search(r"~ api_keys +\= \(sensitive, differs from the manifest\) -> \(sensitive\)",
                     plan.stdout), plan.stdout
    applied = lb.cli("apply", "-f", path, "--auto-approve")
    assert applied.code == 0, applied.output
    assert "The account now matches the manifest." in applied.stdout
    again = lb.cli("plan", "-f", path, "--detailed-exitcode")
    assert again.code == 0 and "No changes." in again.stdout, again.output
    models = {m["name"]: m for m in lb.ws.models().values()}
    assert set(models) == {"gpt-4o-mini", "llama-70b", "qwen-32b"}     # mixtral pruned
    assert models["llama-70b"]["extra_args"] == {"temperature": 0.6, "max_tokens": 256}
    assert models["llama-70b"]["provider"]["api_keys"] == [KEYS["LB_VLLM_KEY"]]
    primary = lambda p: lb.ws.config(ids[p])["ai"]["runner_config"][RUNNER]["model"]["primary"]
    assert primary("oren") == models["qwen-32b"]["uuid"]
    assert primary("pell") == models["llama-70b"]["uuid"]
    assert primary("ila") == ids["turbo"]          # unmanaged, moved off the pruned model
    assert primary("mara") == ids["turbo"]
    live = set(lb.ws.models())
    for p in ("mara", "oren", "pell", "ila"):
        assert primary(p) in live, f"pipeline {p} points at a deleted model"


def test_rebind_writes_the_whole_config_and_changes_only_the_model(lb: Harness) -> None:
    ids = demo(lb.ws)
    before = {p: lb.ws.config(ids[p]) for p in ("oren", "pell")}
    assert lb.cli("apply", "-f", lb.write(manifest(ids)), "--auto-approve").code == 0
    for p, config in before.items():
        after = lb.ws.config(ids[p])
        assert without_model(after) == without_model(config)   # prompt, trigger, safety, output
        assert set(after) >= {"trigger", "safety", "output", "ai"}
        assert after["ai"]["runner_config"][RUNNER]["prompt"] == config["ai"]["runner_config"][RUNNER]["prompt"]


def test_providers_left_empty_by_the_apply_are_removed(lb: Harness) -> None:
    ids = demo(lb.ws)
    assert lb.cli("apply", "-f", lb.write(manifest(ids)), "--auto-approve").code == 0
    empty = [p for p in lb.ws.providers() if p["llm_count"] == 0
             and p["uuid"] != "00000000-0000-0000-0000-000000000000"]
    assert empty == []
    # the old keys are gone with them
    assert all("sk-old-" not in k for p in lb.ws.providers() for k in p["api_keys"])


def test_state_file_keeps_identity_and_adoption_works_without_it(lb: Harness) -> None:
    ids = demo(lb.ws)
    path = lb.write(manifest(ids))
    assert lb.cli("apply", "-f", path, "--auto-approve").code == 0
    state = json.loads((lb.tmp / "langbot.state.json").read_text())
    recorded = next(iter(state["accounts"].values()))["platform"]["ids"]
    assert recorded["turbo"] == ids["turbo"] and set(recorded) == {"turbo", "llama", "qwen"}
    (lb.tmp / "langbot.state.json").unlink()
    again = lb.cli("plan", "-f", path)
    assert "No changes." in again.stdout, again.output


def test_ambiguous_adoption_is_refused_naming_both_uuids(lb: Harness) -> None:
    first = lb.ws.model("gpt-4o-mini", GATEWAY, KEYS["LB_GATEWAY_KEY"])
    second = lb.ws.model("gpt-4o-mini", GATEWAY, KEYS["LB_GATEWAY_KEY"])
    text = f"""version: 1
platform: langbot
models:
  - key: turbo
    name: gpt-4o-mini
    base_url: {GATEWAY}
    api_keys: ["${{LB_GATEWAY_KEY}}"]
"""
    before = lb.ws.models()
    out = lb.cli("apply", "-f", lb.write(text), "--auto-approve")
    assert out.code == 1
    assert first in out.stderr and second in out.stderr and "pin one with `uuid:`" in out.stderr
    assert "langbot.yaml:4" in out.stderr
    assert lb.ws.models() == before
    pinned = text + f"    uuid: {second}\n"
    out = lb.cli("plan", "-f", lb.write(pinned))
    assert out.code == 0 and "No changes." in out.stdout, out.output


def test_export_plans_back_to_no_changes(lb: Harness) -> None:
    ids = demo(lb.ws)
    lb.ws.model("gpt-4o-mini", VLLM, "sk-old-dup")          # a second model of the same name
    target = lb.tmp / "adopted.yaml"
    out = lb.cli("export", "--platform", "langbot", "-o", str(target))
    assert out.code == 0, out.output
    text = target.read_text()
    assert "uuid:" in text and "sk-" not in text
    assert text.count("- uuid:") == 4   # every pipeline
    env = {line.split()[1]: None for line in out.stderr.splitlines() if line.startswith("  LANGBOT_MODEL_")}
    assert env, out.stderr
    again = lb.cli("plan", "-f", str(target))
    assert again.code == 0 and "No changes." in again.stdout, again.output
    assert ids


def test_drift_is_detected_and_reported_without_writing(lb: Harness) -> None:
    ids = demo(lb.ws)
    path = lb.write(manifest(ids))
    assert lb.cli("apply", "-f", path, "--auto-approve").code == 0
    lb.ws.call("PUT", f"/api/v1/provider/models/llm/{ids['turbo']}", {"extra_args": {"temperature": 1.5}})
    before = lb.ws.models()
    out = lb.cli("drift", "-f", path)
    assert out.code == 2, out.output
    assert "extra_args" in out.stdout and "1.5" in out.stdout
    assert lb.ws.models() == before


def test_a_non_string_model_name_is_refused_before_any_write(lb: Harness, workspace: Workspace) -> None:
    if workspace.emulator is None:
        pytest.skip("the real server answers 500 to every list once such a model exists; "
                    "the emulator's contract test covers that it does")
    ids = demo(lb.ws)
    bad = lb.ws.call("POST", "/api/v1/provider/models/llm", {
        "name": 123, "provider": {"requester": "openai-chat-completions", "base_url": VLLM,
                                  "api_keys": ["sk-old-x"]}})["uuid"]
    out = lb.cli("apply", "-f", lb.write(manifest(ids)), "--auto-approve", "--retry-max-time", "1")
    assert out.code == 1
    assert "/api/v1/provider/models/llm" in out.stderr
    lb.ws.call("DELETE", f"/api/v1/provider/models/llm/{bad}")


def test_unknown_pipeline_is_a_plan_error_naming_the_line(lb: Harness) -> None:
    ids = demo(lb.ws)
    text = manifest(ids).replace(ids["pell"], str(uuidlib.uuid4()))
    out = lb.cli("plan", "-f", lb.write(text))
    assert out.code == 1
    assert "langbot.yaml:25: pipeline" in out.stderr and "does not exist" in out.stderr


def test_no_pipeline_ever_points_at_a_missing_model_under_faults(lb: Harness, workspace: Workspace) -> None:
    if workspace.emulator is None:
        pytest.skip("fault injection is the emulator's")
    from convai_sync.emulator import Faults
    ids = demo(lb.ws)
    path = lb.write(manifest(ids))
    workspace.emulator.faults = Faults(rate=0.3, after_commit=0.3, seed=11)
    for _ in range(4):
        out = lb.cli("apply", "-f", path, "--auto-approve", "--retry-max-time", "5")
        if out.code == 0:
            break
    workspace.emulator.faults = Faults()
    assert lb.cli("plan", "-f", path).stdout.count("No changes.") == 1
    assert workspace.emulator.orphan_events == []


def test_saved_plan_applies_exactly_what_was_planned_and_refuses_when_stale(lb: Harness) -> None:
    ids = demo(lb.ws)
    path = lb.write(manifest(ids))
    saved = str(lb.tmp / "plan.json")
    planned = lb.cli("plan", "-f", path, "--out", saved)
    assert planned.code == 0, planned.output
    doc = json.loads(Path(saved).read_text())
    assert doc["platform"] == "langbot" and doc["saved_plan"]["api_key_env"]["qwen"] == "LB_VLLM_KEY"
    assert {c["resource"] for c in doc["changes"]} == {"model", "pipeline"}
    lb.ws.call("PUT", f"/api/v1/provider/models/llm/{ids['turbo']}", {"extra_args": {"temperature": 0.9}})
    before = lb.ws.models()
    stale = lb.cli("apply", saved, "--auto-approve")
    assert stale.code == 1 and "saved plan is stale: model turbo changed since the plan" in stale.stderr
    assert lb.ws.models() == before
    planned = lb.cli("plan", "-f", path, "--out", saved)
    applied = lb.cli("apply", saved, "--auto-approve")
    assert applied.code == 0 and "The account now matches the manifest." in applied.stdout, applied.output


def test_json_and_markdown_plans_speak_of_pipelines(lb: Harness) -> None:
    ids = demo(lb.ws)
    path = lb.write(manifest(ids))
    as_json = json.loads(lb.cli("plan", "-f", path, "--format", "json").stdout)
    assert as_json["platform"] == "langbot" and as_json["meta"]["requests"] == 2
    rebinds = [c for c in as_json["changes"] if c["resource"] == "pipeline"]
    assert {c["id"] for c in rebinds} == {ids["oren"], ids["pell"], ids["ila"]}
    assert all(c["action"] == "update" and c["phase"] == "rebind" for c in rebinds)
    ila = next(c for c in rebinds if c["id"] == ids["ila"])
    assert ila["purpose"] == "unmanaged" and ila["after"] == {"model": "turbo"}
    markdown = lb.cli("plan", "-f", path, "--format", "markdown").stdout
    assert "| register | update | replace | deregister | pipelines |" in markdown
    assert "Pipelines that use them are moved first" in markdown and "(platform `langbot`)" in markdown


def test_new_models_on_one_new_provider_make_one_provider_object(lb: Harness) -> None:
    # LangBot's find-or-create of an inline provider races: concurrent creates
    # for a provider that does not exist yet each made one (seen on 4.11.2).
    models = "".join(f"""  - key: m{i}
    name: model-{i}
    base_url: http://127.0.0.1:9/shared/v1
    api_keys: ["${{LB_NEW_KEY}}"]
""" for i in range(10))
    out = lb.cli("apply", "-f", lb.write(f"version: 1\nplatform: langbot\nmodels:\n{models}"),
                 "--auto-approve", "--parallelism", "10")
    assert out.code == 0, out.output
    shared = [p for p in lb.ws.providers() if p["base_url"].rstrip("/") == "http://127.0.0.1:9/shared/v1"]
    assert len(shared) == 1 and shared[0]["llm_count"] == 10


def test_rebound_changes_only_the_model_reference() -> None:
    from deepdiff import DeepDiff

    from convai_sync.errors import ConvaiSyncError
    from convai_sync.providers.langbot.client import rebound

    config = json.loads(FIXTURE.read_text())
    config["ai"] = {"runner": {"id": RUNNER}, "runner_config": {RUNNER: {
        "model": {"primary": "old", "fallbacks": ["x"]}, "prompt": [{"role": "system", "content": "p"}]}}}
    new = rebound(config, "new", "pipeline 'p'")
    diff = DeepDiff(config, new)
    assert list(diff) == ["values_changed"] and list(diff["values_changed"]) == [
        f"root['ai']['runner_config']['{RUNNER}']['model']['primary']"]
    assert config["ai"]["runner_config"][RUNNER]["model"]["primary"] == "old"  # not mutated
    del config["ai"]["runner_config"][RUNNER]["model"]
    with pytest.raises(ConvaiSyncError, match="its runner has no model setting"):
        rebound(config, "new", "pipeline 'p'")


def test_endpoint_checks_read_the_workspace_and_refuse_binding_onto_a_failing_endpoint(
        lb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """check: one read of the workspace (its key works), then each model's own
    endpoint; apply refuses, writing nothing, when its plan moves pipelines onto
    a failing one."""
    from convai_sync.emulator.openai_stub import OpenAIStub
    monkeypatch.delenv("CONVAI_SYNC_NO_ENDPOINT_CHECK", raising=False)
    with OpenAIStub(keys=set(KEYS.values())) as stub:
        ids = demo(lb.ws)
        path = lb.write(manifest(ids).replace(GATEWAY, f"{stub.url}/v1")
                        .replace(VLLM, f"{stub.url}/down/v1"))
        checked = lb.cli("check", "-f", path)
        assert checked.code == 1, checked.output
        assert "Account: LangBot at" in checked.stdout and "key accepted" in checked.stdout
        assert "3 endpoints: 1 ok, 2 failing." in checked.stdout
        before = (lb.ws.models(), lb.ws.providers(), {p: lb.ws.config(ids[p]) for p in ("oren", "pell")})
        refused = lb.cli("apply", "-f", path, "--auto-approve")
        assert refused.code == 1 and "Refusing to apply" in refused.stderr, refused.output
        assert "model 'qwen' is failing" in refused.stderr and "model 'turbo'" not in refused.stderr
        assert (lb.ws.models(), lb.ws.providers(),
                {p: lb.ws.config(ids[p]) for p in ("oren", "pell")}) == before
