"""End to end: the real CLI over real HTTP against the emulator."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from conftest import CANARIES, EXAMPLE, Result, assert_no_secret, example_for
from convai_sync.emulator import Emulator
from convai_sync.manifest import load_manifest

DIALECTS = ["llm-models", "custom-llm"]


def assert_matches_manifest(emu: Emulator, dialect: str) -> None:
    m = load_manifest(EXAMPLE).manifest
    models = emu.models()
    assert set(models) == {s.model_group_name for s in m.models}  # prune removed the rest
    for spec in m.models:
        live = models[spec.model_group_name]
        assert (live["model_name"], live["base_url"]) == (spec.model_name, spec.base_url)
        if dialect == "llm-models":
            assert (live["display_name"], live["is_uncensored"]) == (spec.display_name, spec.is_uncensored)
    chars = emu.characters()
    for spec in m.characters:
        assert chars[spec.char_id]["model_group_name"] == spec.model_group_name
        if spec.temperature is not None:
            assert chars[spec.char_id]["temperature"] == spec.temperature
    # api_key is write-only: only what convai-sync (re)registered carries the new key
    assert models["studio-qwen-rp"]["api_key"] == CANARIES["STUDIO_VLLM_KEY"]
    assert models["studio-turbo"]["api_key"] == "sk-demo-live-1"
    known = set(models) | set(m.builtins())
    assert all(c["model_group_name"] in known for c in chars.values())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_drifted_account_converges_and_no_character_is_ever_orphaned(
        dialect: str, make_emulator: Callable[..., Emulator], run: Callable[..., Result],
        tmp_path: Path) -> None:
    emu = make_emulator(dialect)
    args = ("-f", str(example_for(dialect, tmp_path)), "--api-url", emu.url)
    first = run("plan", *args, "--detailed-exitcode")
    assert first.code == 2, first.output
    assert "Plan: 1 to register" in first.stdout
    assert emu.writes() == []

    applied = run("apply", *args, "--auto-approve")
    assert applied.code == 0, applied.output
    assert "Apply complete" in applied.stdout
    assert "The account now matches the manifest." in applied.stdout

    again = run("plan", *args, "--detailed-exitcode")
    assert again.code == 0, again.output
    assert "No changes. The account matches the manifest." in again.stdout
    assert_matches_manifest(emu, dialect)
    assert emu.orphan_events == []
    assert_no_secret(first.output, applied.output, again.output)


def test_replace_in_llm_models_parks_characters_then_restores_them(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    emu = make_emulator("llm-models")
    assert run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve").code == 0
    paths = [(r.path, (r.body or {}).get("model_group_name")) for r in emu.writes()]
    dereg = paths.index(("/llm-models/deregister", "studio-llama-70b"))
    reg = paths.index(("/llm-models/register", "studio-llama-70b"))
    oren = [i for i, r in enumerate(emu.writes()) if (r.body or {}).get("charID", "").startswith("8b1d4e7a")]
    assert oren[0] < dereg < reg < oren[1]
    assert paths[-1] == ("/llm-models/deregister", "legacy-mixtral")
    assert emu.orphan_events == []


def test_custom_llm_updates_model_name_in_place(make_emulator: Callable[..., Emulator],
                                                run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator("custom-llm")
    example = example_for("custom-llm", tmp_path)
    out = run("plan", "-f", str(example), "--api-url", emu.url, "--format", "json")
    doc = json.loads(out.stdout)
    assert doc["dialect"] == "custom-llm"
    llama = [c for c in doc["changes"] if c["id"] == "studio-llama-70b"]
    assert [c["action"] for c in llama] == ["update"]
    assert llama[0]["fields"] == ["model_name"]


def test_json_plan_contract(make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    emu = make_emulator()
    out = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--format", "json")
    assert out.code == 0
    doc = json.loads(out.stdout)
    assert doc["format_version"] == 1
    assert doc["summary"] == {"register": 1, "update": 1, "replace": 1, "deregister": 1,
                              "characters": 5, "rebind": 5, "consumer_update": 0, "changes": 11}
    for change in doc["changes"]:
        assert change["resource"] in ("model", "character")
        assert change["action"] in ("register", "update", "replace", "deregister")
        assert "before" in change and "after" in change
    phases = [c["phase"] for c in doc["changes"]]
    order = ["register", "update", "rebind", "replace", "restore", "deregister"]
    assert phases == sorted(phases, key=order.index)
    assert doc["meta"]["requests"] == 2
    assert '"(sensitive)"' in out.stdout
    assert_no_secret(out.output)


def test_apply_without_terminal_or_auto_approve_refuses_and_writes_nothing(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    emu = make_emulator()
    out = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert out.code == 1
    assert "no terminal" in out.stderr and "--auto-approve" in out.stderr
    assert "Plan: 1 to register" in out.stdout
    assert emu.writes() == []


def test_wrong_account_key_is_named_as_such(make_emulator: Callable[..., Emulator],
                                            run: Callable[..., Result],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    monkeypatch.setenv("CONVAI_API_KEY", "wrong-key-123")
    out = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert out.code == 1
    assert "the account key was refused" in out.stderr
    assert "POST /llm-models/list (model list) failed: HTTP 401" in out.stderr
    assert "Traceback" not in out.output


def test_missing_secret_warns_on_plan_and_blocks_apply_before_any_write(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result],
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    monkeypatch.delenv("STUDIO_VLLM_KEY")
    planned = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert planned.code == 0
    assert "Warning: " in planned.stderr and "STUDIO_VLLM_KEY is not set" in planned.stderr
    assert ("Apply sends keys, read from these environment variables: STUDIO_VLLM_KEY "
            "(studio-llama-70b, studio-qwen-rp).") in planned.stdout  # the register and the replace
    emu.clear_log()
    applied = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve")
    assert applied.code == 1
    assert "models.yaml:" in applied.stderr and "STUDIO_VLLM_KEY is not set" in applied.stderr
    assert "Nothing was written" in applied.stderr
    assert emu.writes() == []  # it read the account to know which keys it sends, then stopped
    assert "STUDIO_GATEWAY_KEY" not in applied.stderr


def test_apply_refuses_only_for_keys_it_sends(make_emulator: Callable[..., Emulator],
                                             run: Callable[..., Result], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    args = ("-f", str(EXAMPLE), "--api-url", emu.url)
    assert run("apply", *args, "--auto-approve").code == 0
    monkeypatch.delenv("STUDIO_VLLM_KEY")
    monkeypatch.delenv("STUDIO_GATEWAY_KEY")
    edited = tmp_path / "models.yaml"  # a temperature-only change sends no key
    edited.write_text(EXAMPLE.read_text().replace("temperature: 0.4", "temperature: 0.35"))
    planned = run("plan", "-f", str(edited), "--api-url", emu.url)
    assert "Warning" not in planned.stderr and "Apply sends keys" not in planned.stdout
    emu.clear_log()
    applied = run("apply", "-f", str(edited), "--api-url", emu.url, "--auto-approve")
    assert applied.code == 0, applied.output
    assert [r.path for r in emu.writes()] == ["/character/update"]
    # a rotation sends that model's key: only its variable is needed, and the plan says so
    edited.write_text(EXAMPLE.read_text().replace(
        "# api_key_version: 1", "api_key_version: 1"))
    planned = run("plan", "-f", str(edited), "--api-url", emu.url)
    assert ("Apply sends keys, read from these environment variables: STUDIO_GATEWAY_KEY "
            "(studio-turbo).") in planned.stdout
    assert "STUDIO_GATEWAY_KEY is not set" in planned.stderr and "STUDIO_VLLM" not in planned.stderr
    refused = run("apply", "-f", str(edited), "--api-url", emu.url, "--auto-approve")
    assert refused.code == 1 and "STUDIO_GATEWAY_KEY is not set" in refused.stderr
    assert "STUDIO_VLLM_KEY" not in refused.stderr


def test_failed_phase_stops_later_phases_and_a_rerun_converges(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path) -> None:
    emu = make_emulator()
    # a character bound to a code the account does not offer fails in the rebind phase
    text = EXAMPLE.read_text().replace("api_dialect: auto", "api_dialect: auto\n  builtin_models: [gpt-9-preview]")
    text = text.replace("model_group_name: gpt-4o\n", "model_group_name: gpt-9-preview\n")
    bad = tmp_path / "models.yaml"
    bad.write_text(text)
    out = run("apply", "-f", str(bad), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert "Apply failed:" in out.stdout
    assert "failed        update     character \"Guide Ila\"" in out.stdout
    assert "Model 'gpt-9-preview' is not available" in out.stdout
    assert "not attempted deregister model \"legacy-mixtral\"" in out.stdout
    assert "not attempted replace    model \"studio-llama-70b\"" in out.stdout
    assert "legacy-mixtral" in emu.models()  # the deregister phase never ran
    assert emu.orphan_events == []

    fixed = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve")
    assert fixed.code == 0, fixed.output
    assert run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--detailed-exitcode").code == 0
    assert emu.orphan_events == []


def test_auto_dialect_detects_custom_llm(make_emulator: Callable[..., Emulator],
                                         run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator("custom-llm")
    out = run("plan", "-f", str(example_for("custom-llm", tmp_path)), "--api-url", emu.url)
    assert "(dialect: custom-llm)" in out.stdout
    assert [r.path for r in emu.requests] == ["/llm-models/list", "/custom-llm/list", "/character/list"]


def test_unreachable_api_is_a_clear_error(run: Callable[..., Result]) -> None:
    out = run("plan", "-f", str(EXAMPLE), "--api-url", "http://127.0.0.1:9")
    assert out.code == 1
    assert "cannot connect to http://127.0.0.1:9" in out.stderr
    assert "Traceback" not in out.output


def test_emulator_flag_runs_the_demo_without_an_account(run: Callable[..., Result],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*CANARIES, "CONVAI_API_KEY"):
        monkeypatch.delenv(var)
    out = run("apply", "-f", str(EXAMPLE), "--emulator", "--auto-approve")
    assert out.code == 0, out.output
    assert "built-in emulator" in out.stderr
    assert "The account now matches the manifest." in out.stdout


def test_validate_reports_counts(run: Callable[..., Result]) -> None:
    out = run("validate", "-f", str(EXAMPLE))
    assert (out.code, out.stdout.strip()) == (0, f"{EXAMPLE}: valid (3 models, 5 characters)")


def test_custom_llm_sends_a_changed_is_uncensored_it_cannot_read_back(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator("custom-llm")
    example = example_for("custom-llm", tmp_path)
    args = ("-f", str(example), "--api-url", emu.url)
    assert run("apply", *args, "--auto-approve").code == 0
    state = json.loads((tmp_path / "models.state.json").read_text())["accounts"][f"models@{emu.url}"]
    assert state["applied_fields"]["studio-turbo"] == {"is_uncensored": False}
    example.write_text(example.read_text().replace("is_uncensored: false", "is_uncensored: true"))
    planned = run("plan", *args, "--detailed-exitcode")
    assert planned.code == 2, planned.output
    assert "~ is_uncensored = false -> true" in planned.stdout
    assert ("Not checked live (the custom-llm API does not return them): display_name, "
            "is_uncensored; those it can set are compared with the value last applied") in planned.stdout
    doc = json.loads(run("plan", *args, "--format", "json").stdout)
    assert doc["meta"]["unchecked_fields"] == ["display_name", "is_uncensored"]
    emu.clear_log()
    assert run("apply", *args, "--auto-approve").code == 0
    assert [(r.path, r.body.get("is_uncensored")) for r in emu.writes()] == [("/custom-llm/update", True)]
    assert emu.models()["studio-turbo"]["is_uncensored"] is True
    assert run("plan", *args, "--detailed-exitcode").code == 0


def test_a_temperature_only_edit_is_counted_as_an_update_and_one_change_is_singular(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    assert run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve").code == 0
    edited = tmp_path / "models.yaml"
    edited.write_text(EXAMPLE.read_text().replace("temperature: 0.4", "temperature: 0.35"))
    doc = json.loads(run("plan", "-f", str(edited), "--api-url", emu.url, "--format", "json").stdout)
    assert doc["summary"] == {"register": 0, "update": 0, "replace": 0, "deregister": 0,
                              "characters": 1, "rebind": 0, "consumer_update": 1, "changes": 1}
    applied = run("apply", "-f", str(edited), "--api-url", emu.url, "--auto-approve")
    assert "0 characters to rebind, 1 character to update." in applied.stdout
    assert "Apply complete: 1 change applied." in applied.stdout
    assert "will be updated" in applied.stdout and "rebound" not in applied.stdout


def test_plan_warnings_go_to_stderr_in_text_and_stay_in_json(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    unpruned = tmp_path / "models.yaml"
    unpruned.write_text(EXAMPLE.read_text().replace("prune: true", "prune: false"))
    out = run("plan", "-f", str(unpruned), "--api-url", emu.url)
    warning = "model 'legacy-mixtral' is live but not in the manifest; it is left alone"
    assert f"Warning: {warning}" in out.stderr and warning not in out.stdout
    assert out.stdout.startswith("convai-sync will perform these actions")
    doc = json.loads(run("plan", "-f", str(unpruned), "--api-url", emu.url, "--format", "json").stdout)
    assert any(w.startswith(warning) for w in doc["warnings"])


def test_emulator_with_api_url_is_a_usage_error(make_emulator: Callable[..., Emulator],
                                                run: Callable[..., Result]) -> None:
    emu = make_emulator()
    out = run("plan", "-f", str(EXAMPLE), "--emulator", "--api-url", emu.url)
    assert out.code == 1
    assert "--emulator runs against a built-in emulator, so it cannot be combined with --api-url" in out.stderr
    assert emu.requests == [] and out.stdout == ""
