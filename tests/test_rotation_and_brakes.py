"""Key rotation through api_key_version, and the safety brakes, via the CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import ACCOUNT_KEY, EXAMPLE, Result, assert_no_secret
from convai_sync.emulator import Emulator, Faults
from convai_sync.executor import execute
from convai_sync.manifest import load_manifest, resolve_secrets
from convai_sync.planner import build_plan
from convai_sync.providers.convai import ConvaiClient
from convai_sync.retry import RetryPolicy
from convai_sync.state import SyncState, record_applied


def versioned(tmp_path: Path, turbo: int = 1, vllm: int = 1) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("api_key: ${STUDIO_GATEWAY_KEY}", f"api_key: ${{STUDIO_GATEWAY_KEY}}\n    api_key_version: {turbo}")
    text = text.replace("api_key: ${STUDIO_VLLM_KEY}", f"api_key: ${{STUDIO_VLLM_KEY}}\n    api_key_version: {vllm}")
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_bumping_api_key_version_plans_exactly_one_update_and_resends_the_key(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    manifest = versioned(tmp_path)
    args = ("--api-url", emu.url)
    first = run("apply", "-f", str(manifest), *args, "--auto-approve")
    assert first.code == 0, first.output
    state = tmp_path / "models.state.json"
    recorded = json.loads(state.read_text())["accounts"][f"models@{emu.url}"]["api_key_versions"]
    assert recorded == {"studio-turbo": 1, "studio-llama-70b": 1, "studio-qwen-rp": 1}
    assert run("plan", "-f", str(manifest), *args, "--detailed-exitcode").code == 0

    versioned(tmp_path, turbo=2)
    monkeypatch.setenv("STUDIO_GATEWAY_KEY", "sk-CANARY-rotated-99e1")
    planned = run("plan", "-f", str(manifest), *args, "--detailed-exitcode", "--format", "json")
    assert planned.code == 2
    [change] = json.loads(planned.stdout)["changes"]
    assert (change["id"], change["action"], change["fields"]) == ("studio-turbo", "update", ["api_key"])
    text = run("plan", "-f", str(manifest), *args).stdout
    assert "~ api_key = (sensitive, version 1 \u2192 2)" in text
    assert "Plan: 0 to register, 1 to update, 0 to deregister, 0 characters to rebind." in text

    emu.clear_log()
    applied = run("apply", "-f", str(manifest), *args, "--auto-approve")
    assert applied.code == 0, applied.output
    assert [r.path for r in emu.writes()] == ["/llm-models/update"]
    assert emu.models()["studio-turbo"]["api_key"] == "sk-CANARY-rotated-99e1"
    assert run("plan", "-f", str(manifest), *args, "--detailed-exitcode").code == 0
    state_text = state.read_text()
    assert json.loads(state_text)["accounts"][f"models@{emu.url}"]["api_key_versions"]["studio-turbo"] == 2
    assert "sk-" not in state_text and not re.search(r"[0-9a-f]{32}", state_text)
    assert_no_secret(first.output, planned.output, text, applied.output, state_text)
    assert "sk-CANARY-rotated-99e1" not in planned.output + text + applied.output


def test_without_a_record_the_first_versioned_run_sends_the_key_and_records_it(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    """No record of which key is live (the model was registered unversioned, or
    the state file was lost): the live key may be the leaked one, so it is sent."""
    emu = make_emulator()
    plain = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve")
    assert plain.code == 0
    assert not (EXAMPLE.parent / "models.state.json").exists()  # nothing versioned, no file
    manifest = versioned(tmp_path, turbo=4, vllm=4)
    out = run("plan", "-f", str(manifest), "--api-url", emu.url, "--detailed-exitcode")
    assert out.code == 2, out.output
    assert "~ api_key = (sensitive, version unknown \u2192 4)" in out.stdout
    assert "Plan: 0 to register, 3 to update" in out.stdout
    emu.clear_log()
    assert run("apply", "-f", str(manifest), "--api-url", emu.url, "--auto-approve").code == 0
    assert sorted(r.path for r in emu.writes()) == ["/llm-models/update"] * 3
    after = run("plan", "-f", str(manifest), "--api-url", emu.url, "--detailed-exitcode")
    assert after.code == 0 and "unknown" not in after.stdout
    recorded = json.loads((tmp_path / "models.state.json").read_text())["accounts"][f"models@{emu.url}"]
    assert recorded["api_key_versions"] == {"studio-turbo": 4, "studio-llama-70b": 4, "studio-qwen-rp": 4}


def test_a_rotation_that_fails_is_not_recorded(make_emulator: Callable[..., Emulator],
                                               run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    manifest = versioned(tmp_path)
    assert run("apply", "-f", str(manifest), "--api-url", emu.url, "--auto-approve").code == 0
    versioned(tmp_path, vllm=2)
    loaded = load_manifest(manifest)
    versions = SyncState.load(tmp_path / "models.state.json", f"models@{emu.url}")
    client = ConvaiClient(emu.url, ACCOUNT_KEY, retry=RetryPolicy(max_attempts=2, base_delay=0.001))
    plan = build_plan(loaded, client.read_state(), key_versions=versions.versions)
    assert sorted(c.id for c in plan.changes) == ["studio-llama-70b", "studio-qwen-rp"]
    emu.faults = Faults(rate=1.0)
    report = execute(plan, client, resolve_secrets(loaded).keys)
    assert not report.ok
    record_applied(versions, plan, report)
    assert versions.versions == {"studio-turbo": 1, "studio-llama-70b": 1, "studio-qwen-rp": 1}
    emu.faults = Faults()
    assert not build_plan(loaded, client.read_state(), key_versions=versions.versions).empty


def test_empty_models_with_prune_is_refused_with_zero_writes(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    path = tmp_path / "empty.yaml"
    path.write_text("version: 1\nsettings:\n  prune: true\n  fallback_model: gpt-4o-mini\n  "
                    "max_deregister: 10\nmodels: []\n")
    out = run("apply", "-f", str(path), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert "every custom model (3) would be deregistered" in out.stderr and "--allow-empty" in out.stderr
    assert emu.writes() == []
    ok = run("apply", "-f", str(path), "--api-url", emu.url, "--auto-approve", "--allow-empty")
    assert ok.code == 0, ok.output
    assert emu.models() == {} and emu.orphan_events == []


def test_a_parse_error_is_never_read_as_an_empty_manifest(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nsettings:\n  prune: true\nmodels:\n  - model_group_name: [\n")
    out = run("apply", "-f", str(path), "--api-url", emu.url, "--auto-approve", "--allow-empty")
    assert out.code == 1 and "YAML syntax error" in out.stderr
    assert emu.requests == []


def test_max_deregister_brake(make_emulator: Callable[..., Emulator], run: Callable[..., Result],
                              tmp_path: Path) -> None:
    emu = make_emulator()
    path = tmp_path / "m.yaml"
    path.write_text(EXAMPLE.read_text().replace("max_deregister: 3", "max_deregister: 1"))
    out = run("apply", "-f", str(path), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert ("the plan deregisters or replaces 2 models (legacy-mixtral, studio-llama-70b), more "
            "than settings.max_deregister = 1") in out.stderr
    assert emu.writes() == []
    assert run("apply", "-f", str(path), "--api-url", emu.url, "--auto-approve",
               "--allow-deregister").code == 0


def test_protected_model_is_not_replaced(make_emulator: Callable[..., Emulator],
                                         run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    path = tmp_path / "m.yaml"
    path.write_text(EXAMPLE.read_text().replace("protect: false", "protect: true"))
    out = run("plan", "-f", str(path), "--api-url", emu.url)
    assert out.code == 1
    assert re.search(r"m.yaml:\d+: model 'studio-llama-70b' is protected \(protect: true\) but "
                     r"changing model_name requires replacing it", out.stderr)


def test_rerun_moves_back_a_character_an_earlier_failed_replace_left_parked(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    from convai_sync.emulator import demo_seed
    seed = demo_seed()
    # as a failed replace leaves it: studio-llama-70b deregistered, its unmanaged
    # character waiting on the fallback, and the state file saying so
    seed["models"] = [m for m in seed["models"] if m["model_group_name"] != "studio-llama-70b"]
    villager = "2e4f6a8c-0b1d-4e3f-9a5c-7d9e1f3a5b7c"
    for c in seed["characters"]:
        if c["model_group_name"] == "studio-llama-70b":
            c["model_group_name"] = "gpt-4o-mini"
    emu = make_emulator(seed=seed)
    manifest = tmp_path / "models.yaml"
    manifest.write_text(EXAMPLE.read_text())
    state = tmp_path / "models.state.json"
    state.write_text(json.dumps({"format_version": 1, "accounts": {emu.url: {
        "api_key_versions": {}, "parked_characters": {villager: "studio-llama-70b"}}}}))
    planned = run("plan", "-f", str(manifest), "--api-url", emu.url)
    assert "unmanaged; parked earlier while 'studio-llama-70b' was replaced" in planned.stdout
    applied = run("apply", "-f", str(manifest), "--api-url", emu.url, "--auto-approve")
    assert applied.code == 0, applied.output
    assert emu.characters()[villager]["model_group_name"] == "studio-llama-70b"
    # a record from before environments (keyed by the URL alone) moves under models@URL
    assert json.loads(state.read_text())["accounts"] == {f"models@{emu.url}": {"api_key_versions": {}}}
    assert emu.orphan_events == []
