"""The Vapi adapter end to end: the real CLI and client over real HTTP against
VapiEmulator. Plans, applies, drift, export and saved plans; the whole model
object survives a bind; safe order; cut lists and duplicate names refused;
Vapi's errors shown message by message; no key in any output."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from conftest import CANARIES, EXAMPLES, Result, assert_no_secret
from convai_sync.emulator.faults import Faults
from convai_sync.providers.vapi import VapiClient
from convai_sync.providers.vapi.emulator import VapiEmulator, vapi_demo_seed

KEY = "vapi-account-key-0123"
EXAMPLE = EXAMPLES / "vapi.yaml"
MARA = "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11"
OREN = "8b1d4e7a-2c3f-4e9b-8d6a-7f0e1c2b3a45"
PELL = "c9e2a5d8-4b6f-4a1c-9e3d-2f7b8a6c5d90"
ILA = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
GATEWAY_ID = "6f1d2c3b-4a5e-4f60-8a71-92b3c4d5e6f7"
LEGACY_ID = "7a2e3d4c-5b6f-4071-9b82-a3c4d5e6f708"
OPENAI_ID = "8b3f4e5d-6c70-4182-8c93-b4d5e6f70819"
MANAGED = ("provider", "url", "model", "temperature")


@pytest.fixture
def vapi(monkeypatch: pytest.MonkeyPatch, serve: Callable[[Any], Any]) -> Callable[..., VapiEmulator]:
    """Start Vapi emulators (demo seed by default); the CLI gets their key."""
    monkeypatch.setenv("VAPI_API_KEY", KEY)
    monkeypatch.delenv("VAPI_API_URL", raising=False)

    def make(seed: dict | None = None, **kw: Any) -> VapiEmulator:
        return serve(VapiEmulator(api_key=KEY, seed=vapi_demo_seed() if seed is None else seed, **kw))

    return make


def manifest(tmp_path: Path, edit: Callable[[dict], None] | None = None,
             name: str = "vapi.yaml") -> Path:
    """The example manifest (optionally edited), in tmp_path: its state file lands there too."""
    doc = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    if edit:
        edit(doc)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")
    return path


def cli(run: Callable[..., Result], command: str, path: Path, emu: VapiEmulator,
        *extra: str) -> Result:
    args = [command, "-f", str(path), "--api-url", emu.url, *extra]
    if command == "apply":
        args.append("--auto-approve")
    return run(*args)


def unmanaged(assistant: dict) -> dict:
    """An assistant minus what a bind may change (and the server's timestamp)."""
    out = {k: v for k, v in assistant.items() if k not in ("updatedAt", "credentialIds")}
    out["model"] = {k: v for k, v in assistant["model"].items() if k not in MANAGED}
    return out


def cred_id(emu: VapiEmulator, name: str) -> str:
    [cid] = [cid for cid, c in emu.credentials().items() if c.get("name") == name]
    return cid


def no_secret(*texts: str) -> None:
    assert_no_secret(*texts)
    for text in texts:
        assert KEY not in text


def test_example_plans_applies_converges_and_keeps_every_other_field(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    before = emu.assistants()
    path = manifest(tmp_path)
    planned = cli(run, "plan", path, emu, "--detailed-exitcode")
    assert planned.code == 2, planned.output
    assert "Plan: 1 to register, 0 to update, 1 to deregister, 2 assistants to rebind, 1 assistant to update." in planned.stdout
    assert emu.writes() == []

    applied = cli(run, "apply", path, emu)
    assert applied.code == 0, applied.output
    assert "The account now matches the manifest." in applied.stdout
    again = cli(run, "plan", path, emu, "--detailed-exitcode")
    assert again.code == 0 and "No changes." in again.stdout, again.output

    after = emu.assistants()
    for aid in (MARA, OREN, PELL):  # prompt, tools, toolIds, knowledgeBase, ... all unchanged
        assert unmanaged(after[aid]) == unmanaged(before[aid])
    assert after[MARA]["model"]["messages"] == before[MARA]["model"]["messages"]
    assert after[MARA]["model"]["tools"] == before[MARA]["model"]["tools"]
    assert after[OREN]["model"]["toolIds"] == before[OREN]["model"]["toolIds"]
    assert after[OREN]["model"]["knowledgeBase"] == before[OREN]["model"]["knowledgeBase"]
    assert after[ILA] == before[ILA]  # not a custom LLM: never touched
    vllm = cred_id(emu, "studio-vllm")
    assert after[OREN]["credentialIds"] == [vllm] and after[PELL]["credentialIds"] == [vllm]
    assert after[PELL]["model"]["model"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert after[OREN]["model"]["temperature"] == 0.7 and after[MARA]["model"]["temperature"] == 0.3
    creds = emu.credentials()
    assert LEGACY_ID not in creds and OPENAI_ID in creds and GATEWAY_ID in creds
    assert creds[vllm]["secret_api_key"] == CANARIES["STUDIO_VLLM_KEY"]
    assert emu.orphan_events == []
    state = (tmp_path / "vapi.state.json").read_text("utf-8")
    no_secret(planned.output, applied.output, again.output, state)
    assert "sk-demo-vapi" not in state  # the seeded keys are never read, let alone kept


def test_safe_order_credential_first_delete_last(vapi: Callable[..., VapiEmulator],
                                                 run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    assert cli(run, "apply", manifest(tmp_path), emu).code == 0
    writes = [(r.path.split("/")[1], r.seq) for r in emu.writes()]
    kinds = [w for w, _ in writes]
    assert kinds[0] == "credential" and kinds[-1] == "credential"  # POST first, DELETE last
    assert kinds[1:-1] == ["assistant"] * 3
    assert emu.orphan_events == []


def test_binding_keeps_other_providers_pins(vapi: Callable[..., VapiEmulator],
                                            run: Callable[..., Result], tmp_path: Path) -> None:
    seed = vapi_demo_seed()
    seed["assistants"][0]["credentialIds"] = [GATEWAY_ID, OPENAI_ID]  # Mara

    def move_mara(doc: dict) -> None:
        doc["assistants"][0]["model"] = "studio-vllm"

    emu = vapi(seed)
    assert cli(run, "apply", manifest(tmp_path, move_mara), emu).code == 0
    assert emu.assistants()[MARA]["credentialIds"] == [OPENAI_ID, cred_id(emu, "studio-vllm")]


def test_url_change_shows_every_bound_assistant(vapi: Callable[..., VapiEmulator],
                                                run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    assert cli(run, "apply", manifest(tmp_path), emu).code == 0

    def new_url(doc: dict) -> None:
        doc["models"][1]["url"] = "https://vllm-2.example-studio.com/v1"

    path = manifest(tmp_path, new_url)
    planned = cli(run, "plan", path, emu, "--format", "json")
    doc = json.loads(planned.stdout)
    rebinds = {c["id"]: c for c in doc["changes"] if c["resource"] == "assistant"}
    assert set(rebinds) == {OREN, PELL}  # both assistants on studio-vllm
    for change in rebinds.values():
        assert change["fields"] == ["url"]
        assert change["after"]["url"] == "https://vllm-2.example-studio.com/v1"
    assert doc["summary"]["update"] == 0 and doc["summary"]["characters"] == 2
    assert cli(run, "apply", path, emu).code == 0
    urls = {aid: a["model"]["url"] for aid, a in emu.assistants().items() if aid in (OREN, PELL)}
    assert set(urls.values()) == {"https://vllm-2.example-studio.com/v1"}


def test_rotation_patches_the_credential_with_the_new_key(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = vapi()
    assert cli(run, "apply", manifest(tmp_path), emu).code == 0
    vllm = cred_id(emu, "studio-vllm")
    rotated = "sk-CANARY-rotated-vllm-99d1"
    monkeypatch.setenv("STUDIO_VLLM_KEY", rotated)

    def bump(doc: dict) -> None:
        doc["models"][1]["api_key_version"] = 2

    path = manifest(tmp_path, bump)
    planned = cli(run, "plan", path, emu)
    assert "api_key = (sensitive, version 1 \u2192 2)" in planned.stdout, planned.output
    assert "Plan: 0 to register, 1 to update, 0 to deregister, 0 assistants to rebind." in planned.stdout
    emu.clear_log()
    applied = cli(run, "apply", path, emu)
    assert applied.code == 0, applied.output
    [patch] = emu.writes()
    assert patch.path == f"/credential/{vllm}"
    assert patch.body == {"provider": "custom-llm", "apiKey": "(sensitive)"}
    assert emu.credentials()[vllm]["secret_api_key"] == rotated
    quiet = cli(run, "plan", path, emu, "--detailed-exitcode")
    assert quiet.code == 0, quiet.output
    state = (tmp_path / "vapi.state.json").read_text("utf-8")
    no_secret(planned.output, applied.output, quiet.output, state)
    assert rotated not in planned.output + applied.output + quiet.output + state


@pytest.mark.parametrize("fault_seed", [1, 7, 42])
def test_converges_within_3_applies_under_faults_and_never_orphans(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path,
        fault_seed: int) -> None:
    emu = vapi(faults=Faults(rate=0.3, after_commit=0.3, seed=fault_seed))
    path = manifest(tmp_path)
    outputs = []
    for _ in range(3):
        result = cli(run, "apply", path, emu, "--retry-max-time", "5")
        outputs.append(result.output)
        if result.code == 0:
            break
    emu.faults = Faults()
    final = cli(run, "plan", path, emu, "--detailed-exitcode")
    assert final.code == 0, "\n".join(outputs + [final.output])
    assert emu.orphan_events == []
    names = [c.get("name") for c in emu.credentials().values()]
    assert sorted(names) == ["openai-main", "studio-gateway", "studio-vllm"]  # no duplicate
    no_secret(*outputs, final.output)


def test_a_list_of_1000_credentials_is_refused_before_any_write(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    seed = vapi_demo_seed()
    seed["credentials"] += [{"name": f"other-{i}", "provider": "custom-llm", "apiKey": "k"}
                            for i in range(1000 - len(seed["credentials"]))]
    emu = vapi(seed)
    result = cli(run, "apply", manifest(tmp_path), emu)
    assert result.code == 1
    assert "GET /credential (credential list) failed" in result.stderr
    assert "1000 credentials" in result.stderr and "cannot page credentials" in result.stderr
    assert emu.writes() == []


def test_a_duplicate_credential_name_is_refused_naming_both_ids(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    seed = vapi_demo_seed()
    twin = "0f0f0f0f-1111-4222-8333-444455556666"
    seed["credentials"].append({"id": twin, "name": "studio-gateway", "provider": "custom-llm",
                                "apiKey": "k"})
    emu = vapi(seed)
    result = cli(run, "plan", manifest(tmp_path), emu)
    assert result.code == 1
    assert GATEWAY_ID in result.stderr and twin in result.stderr
    assert "two custom-llm credentials are named 'studio-gateway'" in result.stderr
    assert "Rename or delete one of them" in result.stderr


def test_vapi_errors_are_shown_message_by_message(vapi: Callable[..., VapiEmulator],
                                                  run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    with emu._lock:  # fields this emulator does not know: what a newer Vapi might hold
        emu._assistants[MARA]["model"].update(unknownThing=1, maxTokens=5)
    result = cli(run, "apply", manifest(tmp_path), emu)
    assert result.code == 1
    assert (f"PATCH /assistant/{MARA} (assistant 'Captain Mara' ({MARA})) failed: HTTP 400: "
            "model.property unknownThing should not exist; model.maxTokens must not be less "
            "than 50") in result.output, result.output
    assert emu.orphan_events == []
    assert LEGACY_ID in emu.credentials()  # the failed phase stopped the run before the delete


def test_wrong_account_key_gets_the_private_key_hint(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = vapi()
    monkeypatch.setenv("VAPI_API_KEY", "not-the-key-0000")
    result = cli(run, "plan", manifest(tmp_path), emu)
    assert result.code == 1
    assert "HTTP 401: Invalid Key. Hot tip" in result.stderr
    assert "VAPI_API_KEY" in result.stderr and "private" in result.stderr


def test_drift_reports_a_prompt_edited_behind_its_back_and_leaves_it(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    path = manifest(tmp_path)
    assert cli(run, "apply", path, emu).code == 0
    clean = cli(run, "drift", path, emu)
    assert clean.code == 0 and "outside convai-sync" not in clean.output, clean.output

    edited = emu.assistants()[MARA]["model"]
    edited["messages"] = [{"role": "system", "content": "You are Captain Mara. Be verbose."}]
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}, verify=False) as http:
        assert http.patch(f"/assistant/{MARA}", json={"model": edited}).status_code == 200
    emu.clear_log()
    drifted = cli(run, "drift", path, emu)
    assert drifted.code == 0, drifted.output  # nothing convai-sync manages differs
    assert (f"Warning: assistant 'Captain Mara' ({MARA}): model.messages[0].content changed "
            "outside convai-sync; left alone") in drifted.stderr
    as_json = json.loads(cli(run, "drift", path, emu, "--format", "json").stdout)
    assert any("model.messages[0].content" in w for w in as_json["plan"]["warnings"])
    assert emu.writes() == []
    assert emu.assistants()[MARA]["model"]["messages"] == edited["messages"]

    applied = cli(run, "apply", path, emu)  # an apply takes the live content as the new baseline
    assert applied.code == 0 and emu.writes() == []
    assert emu.assistants()[MARA]["model"]["messages"] == edited["messages"]
    assert "outside convai-sync" not in cli(run, "drift", path, emu).output


def test_export_round_trip_plans_zero_changes(vapi: Callable[..., VapiEmulator],
                                              run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    out = tmp_path / "exported.yaml"
    exported = run("export", "--platform", "vapi", "--api-url", emu.url, "-o", str(out))
    assert exported.code == 0, exported.output
    text = out.read_text("utf-8")
    assert "${VAPI_MODEL_STUDIO_GATEWAY_API_KEY}" in text and "platform: vapi" in text
    assert "Archivist Oren" in exported.stderr  # pins no credential: left out, with the reason
    planned = run("plan", "-f", str(out), "--api-url", emu.url, "--detailed-exitcode")
    assert planned.code == 0 and "No changes." in planned.stdout, planned.output
    assert emu.writes() == []
    no_secret(exported.output, planned.output, text)
    assert "sk-demo" not in text


def test_export_comments_out_a_credential_nobody_pins(vapi: Callable[..., VapiEmulator],
                                                      run: Callable[..., Result], tmp_path: Path) -> None:
    seed = vapi_demo_seed()
    seed["credentials"].append({"name": "spare", "provider": "custom-llm", "apiKey": "k"})
    emu = vapi(seed)
    exported = run("export", "--platform", "vapi", "--api-url", emu.url)
    assert exported.code == 0, exported.output
    assert "  # - name: spare" in exported.stdout
    assert "credential 'spare': no assistant pins it" in exported.stderr
    out = tmp_path / "exported.yaml"
    out.write_text(exported.stdout, "utf-8")
    planned = run("plan", "-f", str(out), "--api-url", emu.url, "--detailed-exitcode")
    assert planned.code == 0, planned.output


def test_saved_plan_applies_and_holds_no_secret(vapi: Callable[..., VapiEmulator],
                                                run: Callable[..., Result], tmp_path: Path) -> None:
    emu = vapi()
    path = manifest(tmp_path)
    plan_file = tmp_path / "plan.json"
    assert cli(run, "plan", path, emu, "--out", str(plan_file)).code == 0
    saved = plan_file.read_text("utf-8")
    doc = json.loads(saved)
    assert doc["platform"] == "vapi" and doc["saved_plan"]["api_key_env"] == {
        "studio-vllm": "STUDIO_VLLM_KEY"}
    applied = run("apply", str(plan_file), "--api-url", emu.url, "--auto-approve")
    assert applied.code == 0, applied.output
    assert "The account now matches the manifest." in applied.stdout
    stale = run("apply", str(plan_file), "--api-url", emu.url, "--auto-approve")
    assert stale.code == 1 and "saved plan is stale" in stale.stderr
    no_secret(saved, applied.output, stale.output)


def test_markdown_plan(vapi: Callable[..., VapiEmulator], run: Callable[..., Result],
                       tmp_path: Path) -> None:
    emu = vapi()
    md = cli(run, "plan", manifest(tmp_path), emu, "--format", "markdown")
    assert md.code == 0, md.output
    assert "Trickster Pell" in md.stdout and "studio-vllm" in md.stdout
    no_secret(md.output)


def test_plan_of_1000_assistants_takes_3_requests_and_pages_beyond(
        vapi: Callable[..., VapiEmulator]) -> None:
    def seed(n: int) -> dict:
        return {"credentials": [{"name": "gw", "apiKey": "k"}],
                "assistants": [{"name": f"a{i}", "credentialIds": ["gw"], "model": {
                    "provider": "custom-llm", "url": "https://gw.example/v1", "model": "m"}}
                    for i in range(n)]}

    for n, requests in ((999, 2), (1000, 3), (2500, 5)):
        emu = vapi(seed(n))
        with VapiClient(emu.url, KEY) as client:
            live = client.read_state("vapi")
        assert len(live.consumers) == n and live.requests == requests
        assert {c.model for c in live.consumers.values()} == {"gw"}
        emu.stop()


def test_an_undeclared_assistant_pinning_two_credentials_is_moved_before_a_delete(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    seed = vapi_demo_seed()
    seed["assistants"].append({"name": "Twin Pins", "credentialIds": [GATEWAY_ID, LEGACY_ID],
                               "model": {"provider": "custom-llm", "url": "https://x.example/v1",
                                         "model": "m", "messages": [
                                             {"role": "system", "content": "Keep me."}]}})
    emu = vapi(seed)
    path = manifest(tmp_path)
    planned = cli(run, "plan", path, emu)
    assert "Twin Pins" in planned.stdout and "legacy-vllm' is deregistered" in planned.stdout
    assert cli(run, "apply", path, emu).code == 0
    [twin] = [a for a in emu.assistants().values() if a["name"] == "Twin Pins"]
    assert twin["credentialIds"] == [GATEWAY_ID]  # the fallback, exactly one pin
    assert twin["model"]["messages"] == [{"role": "system", "content": "Keep me."}]
    assert emu.orphan_events == []


def test_a_credential_pinned_by_another_providers_assistant_is_not_pruned(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    seed = vapi_demo_seed()
    seed["assistants"][3]["credentialIds"] = [OPENAI_ID, LEGACY_ID]  # Guide Ila (OpenAI)
    emu = vapi(seed)
    result = cli(run, "apply", manifest(tmp_path), emu)
    assert result.code == 1
    assert "prune would delete credentials that assistants convai-sync does not manage" in result.stderr
    assert "'Guide Ila'" in result.stderr and "legacy-vllm" in result.stderr
    assert emu.writes() == []


def test_a_declared_assistant_on_another_provider_is_refused_clearly(
        vapi: Callable[..., VapiEmulator], run: Callable[..., Result], tmp_path: Path) -> None:
    def add_ila(doc: dict) -> None:
        doc["assistants"].append({"id": ILA, "model": "studio-gateway"})

    emu = vapi()
    result = cli(run, "plan", manifest(tmp_path, add_ila), emu)
    assert result.code == 1
    assert "'Guide Ila'" in result.stderr and "runs on provider 'openai'" in result.stderr
    assert emu.writes() == []


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["assistants"].append({"id": MARA, "model": "studio-gateway"}), "duplicate id"),
    (lambda d: d["assistants"][0].update(model="nope"), "model 'nope' is not in this manifest"),
    (lambda d: d["settings"].update(fallback_model="gone"), "fallback_model 'gone'"),
    (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "duplicate name 'studio-gateway'"),
    (lambda d: d["models"][0].update(name="n" * 41), "is too long"),
    (lambda d: d["models"][0].update(api_key="${VAPI_API_KEY}"), "your Vapi account key"),
    (lambda d: d["models"][0].update(api_key="sk-plain"), "plaintext secret"),
    (lambda d: d["assistants"][0].update(temperature=2.5), "between 0 and 2"),
    (lambda d: d["assistants"][0].update(id="not-a-uuid"), "a Vapi assistant id"),
    (lambda d: d["models"][0].update(url="ftp://x"), "http(s) URL"),
])
def test_manifest_problems_are_named_offline(run: Callable[..., Result], tmp_path: Path,
                                             edit: Callable[[dict], None], message: str) -> None:
    result = run("validate", "-f", str(manifest(tmp_path, edit)))
    assert result.code == 1 and message in result.stderr, result.output
