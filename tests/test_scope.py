"""`--replace MODEL` (send its key again) and `--target NAME` (narrow a plan),
on every platform, through the CLI against the emulators."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, EXAMPLES, Result, assert_no_secret
from convai_sync.providers.registry import platform

CASES = {  # platform: (example, a model, its key variable, the write that sends the key)
    "convai": (EXAMPLE, "studio-turbo", "STUDIO_GATEWAY_KEY", "/llm-models/update"),
    "langbot": (EXAMPLES / "langbot.yaml", "turbo", "STUDIO_GATEWAY_KEY", "/api/v1/provider/models/llm/"),
    "vapi": (EXAMPLES / "vapi.yaml", "studio-gateway", "STUDIO_GATEWAY_KEY", "/credential/"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_replace_sends_one_models_key_again_and_nothing_else(
        name: str, account, run: Callable[..., Result], tmp_path: Path) -> None:
    example, model, var, path = CASES[name]
    manifest = tmp_path / "m.yaml"
    manifest.write_text(example.read_text())
    emu = account(name)
    args = ("-f", str(manifest), "--api-url", emu.url)
    assert run("apply", *args, "--auto-approve").code == 0
    assert run("plan", *args, "--detailed-exitcode").code == 0
    planned = run("plan", *args, "--replace", model, "--format", "json")
    [change] = json.loads(planned.stdout)["changes"]
    assert (change["id"], change["action"], change["sends_key"]) == (model, "update", True)
    assert change["fields"] == [platform(name).capabilities(name if name != "convai" else "llm-models").secret_field]
    assert json.loads(planned.stdout)["meta"]["key_variables"] == {model: [var]}
    emu.clear_log()
    applied = run("apply", *args, "--replace", model, "--auto-approve")
    assert applied.code == 0, applied.output
    assert "The account now matches the manifest." in applied.stdout
    writes = [r.path for r in emu.writes()]
    assert len(writes) == 1 and writes[0].startswith(path), writes
    assert run("plan", *args, "--detailed-exitcode").code == 0
    assert_no_secret(planned.output, applied.output)


def test_replace_of_a_model_not_in_the_manifest_is_refused(account, run: Callable[..., Result]) -> None:
    emu = account("convai")
    out = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--replace", "legacy-mixtral")
    assert out.code == 1
    assert "--replace legacy-mixtral: there is no model 'legacy-mixtral' in the manifest" in out.stderr


def test_target_a_character_plans_it_and_the_model_it_moves_onto(
        account, run: Callable[..., Result]) -> None:
    emu = account("convai")
    pell = "c9e2a5d8-4b6f-4a1c-9e3d-2f7b8a6c5d90"  # legacy-mixtral -> studio-qwen-rp (new)
    args = ("-f", str(EXAMPLE), "--api-url", emu.url, "--target", pell)
    doc = json.loads(run("plan", *args, "--format", "json").stdout)
    assert [(c["id"], c["action"]) for c in doc["changes"]] == [("studio-qwen-rp", "register"),
                                                                 (pell, "update")]
    assert any(w.startswith(f"--target {pell}: this plan is narrowed") for w in doc["warnings"])
    applied = run("apply", *args, "--auto-approve")
    assert applied.code == 0, applied.output
    assert "The account now matches the manifest." in applied.stdout  # as far as the target goes
    assert emu.characters()[pell]["model_group_name"] == "studio-qwen-rp"
    assert "legacy-mixtral" in emu.models()  # everything else is left
    assert run("plan", *args, "--detailed-exitcode").code == 0
    assert run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--detailed-exitcode").code == 2
    assert emu.orphan_events == []


def test_target_a_model_going_away_moves_its_characters_first(
        account, run: Callable[..., Result]) -> None:
    emu = account("convai")
    doc = json.loads(run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--target",
                         "legacy-mixtral", "--format", "json").stdout)
    changes = [(c["phase"], c["id"]) for c in doc["changes"]]
    # Pell leaves it for studio-qwen-rp (so that is registered), Old Sage for the fallback
    assert changes == [("register", "studio-qwen-rp"), ("rebind", "c9e2a5d8-4b6f-4a1c-9e3d-2f7b8a6c5d90"),
                       ("rebind", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"), ("deregister", "legacy-mixtral")]
    assert doc["meta"]["targets"] == ["legacy-mixtral"]
    out = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--target", "legacy-mixtral",
              "--auto-approve")
    assert out.code == 0, out.output
    assert "legacy-mixtral" not in emu.models() and emu.orphan_events == []


def test_target_of_an_unknown_name_is_refused(account, run: Callable[..., Result]) -> None:
    emu = account("convai")
    out = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--target", "nope")
    assert out.code == 1
    assert "--target nope: there is no model or character 'nope' in the manifest or the account" in out.stderr


def test_a_saved_plan_takes_no_target_or_replace(run: Callable[..., Result], tmp_path: Path) -> None:
    out = run("apply", str(tmp_path / "plan.json"), "--target", "x")
    assert out.code == 1 and "pass them to plan --out" in out.stderr


def test_a_targeted_apply_records_no_version_it_did_not_send(
        account, run: Callable[..., Result], tmp_path: Path) -> None:
    emu = account("convai")
    manifest = tmp_path / "models.yaml"
    manifest.write_text(EXAMPLE.read_text().replace("# api_key_version: 1", "api_key_version: 1"))
    args = ("-f", str(manifest), "--api-url", emu.url)
    assert run("apply", *args, "--auto-approve").code == 0
    manifest.write_text(manifest.read_text().replace("api_key_version: 1", "api_key_version: 2")
                        .replace("temperature: 0.4", "temperature: 0.3"))
    mara = "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11"
    assert run("apply", *args, "--target", mara, "--auto-approve").code == 0
    state = json.loads((tmp_path / "models.state.json").read_text())["accounts"][f"models@{emu.url}"]
    assert state["api_key_versions"] == {"studio-turbo": 1}  # the rotation is still to do
    assert "(sensitive, version 1 \u2192 2)" in run("plan", *args).stdout


def test_target_a_character_whose_model_is_replaced_brings_the_whole_replace(
        account, run: Callable[..., Result]) -> None:
    emu = account("convai")
    oren, villager = "8b1d4e7a-2c3f-4e9b-8d6a-7f0e1c2b3a45", "2e4f6a8c-0b1d-4e3f-9a5c-7d9e1f3a5b7c"
    doc = json.loads(run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--target", oren,
                         "--format", "json").stdout)
    # Oren moves back onto studio-llama-70b, which is replaced: the replace needs every
    # character on it parked first (Villager too, not in the manifest) and moved back after
    assert [(c["phase"], c["id"]) for c in doc["changes"]] == [
        ("rebind", oren), ("rebind", villager), ("replace", "studio-llama-70b"),
        ("restore", oren), ("restore", villager)]
