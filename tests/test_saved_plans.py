"""Saved plans end to end: `plan --out PLANFILE`, then `apply PLANFILE` applies
exactly that plan, or refuses with zero writes when the account changed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import ACCOUNT_KEY, CANARIES, EXAMPLE, Result, assert_no_secret, example_for
from convai_sync.emulator import Emulator

TURBO = "studio-turbo"
MARA = "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11"      # Captain Mara, declared in the manifest
SAGE = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"      # Old Sage, not in the manifest


def poke(emu: Emulator, path: str, body: dict) -> None:
    """Someone else changes the account between plan and apply (a direct HTTP call)."""
    r = httpx.post(emu.url + path, json=body, headers={"CONVAI-API-KEY": ACCOUNT_KEY}, verify=False)
    assert r.status_code == 200, r.text


def save_plan(run: Callable[..., Result], emu: Emulator, out: Path, manifest: Path | str = EXAMPLE) -> Result:
    result = run("plan", "-f", str(manifest), "--api-url", emu.url, "--out", str(out))
    assert result.code == 0, result.output
    assert out.exists()
    return result


@pytest.mark.parametrize("dialect", ["llm-models", "custom-llm"])
def test_fresh_saved_plan_applies_exactly_and_converges(
        dialect: str, make_emulator: Callable[..., Emulator], run: Callable[..., Result],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator(dialect)
    planfile = tmp_path / "plan.json"
    example = example_for(dialect, tmp_path)
    planned = save_plan(run, emu, planfile, example)
    assert "apply exactly it with: convai-sync apply" in planned.stderr
    saved = json.loads(planfile.read_text())
    expected = [(c["resource"], c["id"], c["action"]) for c in saved["changes"]]
    # the key is read from the environment at apply time, not at plan time
    monkeypatch.setenv("STUDIO_VLLM_KEY", "sk-rotated-after-plan-5521")
    emu.clear_log()

    applied = run("apply", str(planfile), "--api-url", emu.url, "--auto-approve")
    assert applied.code == 0, applied.output
    assert f"Apply complete: {len(expected)} changes applied." in applied.stdout
    assert "The account now matches the manifest." in applied.stdout
    assert run("plan", "-f", str(example), "--api-url", emu.url, "--detailed-exitcode").code == 0
    assert emu.models()["studio-qwen-rp"]["api_key"] == "sk-rotated-after-plan-5521"
    assert emu.orphan_events == []
    writes = [(r.path.split("/")[-1], (r.body or {}).get("charID") or (r.body or {}).get("model_group_name"))
              for r in emu.writes()]
    assert len(writes) == len(expected) + sum(1 for e in expected if e[2] == "replace")
    assert {w[1] for w in writes} == {e[1] for e in expected}
    assert "sk-rotated-after-plan-5521" not in applied.output
    assert_no_secret(planned.output, applied.output)


def test_plan_file_holds_variable_names_and_no_secret_value(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    planfile = tmp_path / "plan.json"
    json_plan = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--format", "json")
    save_plan(run, emu, planfile)
    text = planfile.read_text()
    assert_no_secret(text)
    doc = json.loads(text)
    saved = doc.pop("saved_plan")
    assert doc == json.loads(json_plan.stdout)  # the same document as --format json, plus saved_plan
    assert saved["api_key_env"] == {"studio-qwen-rp": "STUDIO_VLLM_KEY", "studio-llama-70b": "STUDIO_VLLM_KEY"}
    assert set(saved["live"]["models"]) == set(emu.models())
    assert set(saved["live"]["characters"]) == set(emu.characters())
    assert all(h.startswith("sha256:") for h in saved["live"]["models"].values())
    assert "created_at" not in text and saved["manifest"]["path"] == str(EXAMPLE)


@pytest.mark.parametrize("change, named", [
    (("/llm-models/update", {"model_group_name": TURBO, "base_url": "https://elsewhere.example/v1"}),
     f"model {TURBO} changed since the plan"),
    (("/character/update", {"charID": SAGE, "temperature": 0.1}),
     f"character 'Old Sage' ({SAGE}) changed since the plan"),
    (("/character/update", {"charID": MARA, "model_group_name": "legacy-mixtral"}),
     f"character 'Captain Mara' ({MARA}) changed since the plan"),
    (("/llm-models/register", {"model_group_name": "keep-model", "model_name": "m", "api_key": "k-1234",
                               "is_uncensored": False}),
     "model keep-model was added since the plan"),
    (("/llm-models/deregister", {"model_group_name": "legacy-mixtral"}),
     "model legacy-mixtral was removed since the plan"),
])
def test_stale_plan_is_refused_with_zero_writes(
        change: tuple[str, dict], named: str, make_emulator: Callable[..., Emulator],
        run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    planfile = tmp_path / "plan.json"
    save_plan(run, emu, planfile)
    poke(emu, *change)
    emu.clear_log()
    out = run("apply", str(planfile), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert f"{planfile}: saved plan is stale: {named}; run plan again" in out.stderr
    assert "Nothing was written." in out.stderr
    assert emu.writes() == []
    assert "Traceback" not in out.output


def test_plan_against_another_dialect_is_refused(make_emulator: Callable[..., Emulator],
                                                 run: Callable[..., Result], tmp_path: Path) -> None:
    planned_on = make_emulator("llm-models")
    now = make_emulator("custom-llm")
    planfile = tmp_path / "plan.json"
    save_plan(run, planned_on, planfile)
    out = run("apply", str(planfile), "--api-url", now.url, "--auto-approve")
    assert out.code == 1
    assert ("saved plan is stale: the plan was made for the llm-models dialect, but the account "
            "now answers the custom-llm dialect") in out.stderr
    assert now.writes() == []


def plan_beside_manifest(make_emulator: Callable[..., Emulator], run: Callable[..., Result],
                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """models.yaml and plan.json in the working directory, as CI has them."""
    emu = make_emulator()
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE, tmp_path / "models.yaml")
    save_plan(run, emu, tmp_path / "plan.json", "models.yaml")
    return emu


def test_changed_manifest_is_refused_but_a_comment_is_not_a_change(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = plan_beside_manifest(make_emulator, run, tmp_path, monkeypatch)
    original = (tmp_path / "models.yaml").read_text()
    (tmp_path / "models.yaml").write_text(original.replace("temperature: 0.9", "temperature: 0.8"))
    out = run("apply", "plan.json", "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert "saved plan is stale: manifest models.yaml changed since the plan; run plan again" in out.stderr
    assert emu.writes() == []

    (tmp_path / "models.yaml").write_text("# reviewed in PR #12\n" + original)
    out = run("apply", "plan.json", "--api-url", emu.url, "--auto-approve")
    assert out.code == 0, out.output
    assert "The account now matches the manifest." in out.stdout


def test_saved_plan_applies_without_the_manifest_and_says_convergence_was_not_checked(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = plan_beside_manifest(make_emulator, run, tmp_path, monkeypatch)
    (tmp_path / "models.yaml").unlink()
    out = run("apply", "plan.json", "--api-url", emu.url, "--auto-approve")
    assert out.code == 0, out.output
    assert "Apply complete" in out.stdout and "convergence was not checked" in out.stdout
    assert run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--detailed-exitcode").code == 0


def test_missing_key_variable_is_named_before_any_request(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    planfile = tmp_path / "plan.json"
    save_plan(run, emu, planfile)
    monkeypatch.delenv("STUDIO_VLLM_KEY")
    emu.clear_log()
    out = run("apply", str(planfile), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert "environment variable STUDIO_VLLM_KEY is not set (api_key of model 'studio-qwen-rp')" in out.stderr
    assert "Nothing was written" in out.stderr
    assert emu.requests == []


def test_saved_plan_applies_without_a_prompt_but_apply_f_still_asks(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    planfile = tmp_path / "plan.json"
    save_plan(run, emu, planfile)
    asked = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert asked.code == 1 and "no terminal" in asked.stderr and emu.writes() == []
    out = run("apply", str(planfile), "--api-url", emu.url)  # no --auto-approve, no terminal
    assert out.code == 0, out.output
    assert "no terminal" not in out.stderr and "Apply complete" in out.stdout
    assert emu.writes()


@pytest.mark.parametrize("content, message", [
    ('{"format_version": 2, "changes": [], "saved_plan": {}}',
     "format_version 2 is not one this convai-sync reads (it reads 1)"),
    ('{"format_version": 1, "dialect": "llm-models", "changes": []}',
     "is a JSON plan without what apply needs to detect staleness"),
    ('{"hello": "world"}', "not a convai-sync saved plan"),
    ("version: 1\nmodels: []\n", "It looks like a manifest: use apply -f"),
    ('{"format_version": 1, "dialect": "llm-models", "changes": [{"resource": "model"}], "saved_plan": {}}',
     "malformed saved plan"),
])
def test_what_is_not_a_usable_plan_is_refused_clearly(
        content: str, message: str, make_emulator: Callable[..., Emulator],
        run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    bad = tmp_path / "plan.json"
    bad.write_text(content)
    out = run("apply", str(bad), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert message in out.stderr and str(bad) in out.stderr
    assert "Traceback" not in out.output
    assert emu.requests == []


def test_apply_takes_exactly_one_of_manifest_and_planfile(run: Callable[..., Result], tmp_path: Path) -> None:
    both = run("apply", str(tmp_path / "plan.json"), "-f", str(EXAMPLE))
    neither = run("apply")
    for out in (both, neither):
        assert out.code == 1
        assert "pass exactly one of -f MANIFEST and a saved PLANFILE" in out.stderr


def test_show_prints_a_saved_plan_without_the_account(make_emulator: Callable[..., Emulator],
                                                      run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    planfile = tmp_path / "plan.json"
    save_plan(run, emu, planfile)
    emu.clear_log()
    text = run("show", str(planfile))
    markdown = run("show", str(planfile), "--format", "markdown")
    assert text.code == markdown.code == 0
    assert "Plan: 1 to register, 1 to update, 1 to replace" in text.stdout
    assert markdown.stdout.startswith("<!-- convai-sync:plan -->")
    assert emu.requests == []
    assert CANARIES["STUDIO_VLLM_KEY"] not in text.output + markdown.output


def test_same_state_on_another_url_applies_with_a_warning(make_emulator: Callable[..., Emulator],
                                                          run: Callable[..., Result], tmp_path: Path) -> None:
    planned_on, twin = make_emulator(), make_emulator()  # the same demo state behind two URLs
    planfile = tmp_path / "plan.json"
    save_plan(run, planned_on, planfile)
    out = run("apply", str(planfile), "--api-url", twin.url, "--auto-approve")
    assert out.code == 0, out.output
    assert f"the plan was made against {planned_on.url}; applying it to {twin.url}" in out.stderr
    assert planned_on.writes() == [] and twin.writes()


@pytest.mark.parametrize("variable", ["CONVAI_API_KEY", "VAPI_API_KEY", "LANGBOT_API_KEY", "BAD NAME"])
def test_a_tampered_key_variable_is_refused_as_a_manifest_would_be(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        variable: str) -> None:
    """Issue 11, finding 8: a saved plan is an editable file; mapping a model's key to an
    account key would send that key to the model's (someone else's) base_url."""
    emu = make_emulator()
    out = tmp_path / "plan.json"
    assert save_plan(run, emu, out).code == 0
    doc = json.loads(out.read_text())
    model = next(iter(doc["saved_plan"]["api_key_env"]))
    doc["saved_plan"]["api_key_env"][model] = variable
    out.write_text(json.dumps(doc))
    emu.clear_log()
    result = run("apply", str(out), "--api-url", emu.url, "--auto-approve")
    assert result.code == 1
    assert "the saved plan was altered" in result.stderr and f"model '{model}'" in result.stderr
    assert emu.requests == []  # refused before the account is contacted
    assert ACCOUNT_KEY not in result.output


@pytest.mark.parametrize("variable", ["VAPI_API_KEY", "LANGBOT_API_KEY"])
def test_a_manifest_may_not_use_another_platforms_account_key(
        run: Callable[..., Result], tmp_path: Path, variable: str) -> None:
    manifest = tmp_path / "models.yaml"
    manifest.write_text(EXAMPLE.read_text().replace("${STUDIO_GATEWAY_KEY}", "${" + variable + "}"))
    result = run("validate", "-f", str(manifest))
    assert result.code == 1
    assert f"is ${{{variable}}}, an account key: it would be sent to this model's" in result.stderr


def test_every_platforms_account_key_is_listed() -> None:
    from convai_sync.providers.registry import ACCOUNT_KEY_VARS, NAMES, platform
    assert set(ACCOUNT_KEY_VARS) == {platform(name).env_key for name in NAMES}
