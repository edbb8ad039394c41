"""Several accounts from one repository: state keyed by environment and API
URL, `validate --format json`, the pre-commit hook, and the review fingerprint
that apply on merge compares."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import httpx
import yaml

from conftest import ACCOUNT_KEY, EXAMPLE, ROOT, Result
from convai_sync.emulator import Emulator
from convai_sync.saved_plan import review_fingerprint


def versioned(tmp_path: Path, name: str, version: int, environment: str | None = None) -> Path:
    text = EXAMPLE.read_text().replace("api_key: ${STUDIO_GATEWAY_KEY}",
                                       f"api_key: ${{STUDIO_GATEWAY_KEY}}\n    api_key_version: {version}")
    if environment:
        text = text.replace("settings:\n", f"settings:\n  environment: {environment}\n", 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_two_environments_on_one_url_keep_their_own_records(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    state = tmp_path / "shared.state.json"
    common = ("--api-url", emu.url, "--state-file", str(state))
    staging = versioned(tmp_path, "staging.yaml", 1)
    assert run("apply", "-f", str(staging), *common, "--auto-approve").code == 0
    # production: another account behind the same URL, its key at version 2 (never sent from here)
    production = versioned(tmp_path, "prod.yaml", 2, environment="production")
    planned = run("plan", "-f", str(production), *common, "--format", "json")
    assert planned.code == 0, planned.output
    # staging's record (version 1) is not production's: production has none, so its
    # key is sent as from an unknown version, not rotated "1 -> 2"
    [sent] = [c for c in json.loads(planned.stdout)["changes"] if "api_key" in c["fields"]]
    assert sent["before"]["api_key"] == "(sensitive, version unknown)"
    assert list(json.loads(state.read_text())["accounts"]) == [f"staging@{emu.url}"]
    assert run("apply", "-f", str(production), *common, "--auto-approve").code == 0
    accounts = json.loads(state.read_text())["accounts"]
    assert accounts[f"staging@{emu.url}"]["api_key_versions"]["studio-turbo"] == 1
    assert accounts[f"production@{emu.url}"]["api_key_versions"]["studio-turbo"] == 2


def test_a_saved_plan_applies_with_its_environments_records(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    manifest = versioned(tmp_path, "prod.yaml", 1, environment="production")
    planfile = tmp_path / "plan.json"
    assert run("plan", "-f", str(manifest), "--api-url", emu.url, "--out", str(planfile)).code == 0
    assert json.loads(planfile.read_text())["saved_plan"]["environment"] == "production"
    manifest.unlink()  # apply PLANFILE needs only the plan: the environment comes from it
    assert run("apply", str(planfile), "--api-url", emu.url).code == 0
    state = json.loads((tmp_path / "prod.state.json").read_text())
    assert list(state["accounts"]) == [f"production@{emu.url}"]


def test_validate_json_reports_the_verdict_for_bots(run: Callable[..., Result], tmp_path: Path) -> None:
    good = run("validate", "-f", "manifests/production.yaml", "--format", "json")
    assert good.code == 0, good.output
    report = json.loads(good.stdout)
    assert report == {"valid": True, "manifest": "manifests/production.yaml", "problems": [],
                      "platform": "convai", "environment": "production",
                      "account_env": {"url": "CONVAI_API_URL", "key": "CONVAI_API_KEY"},
                      "secret_env": ["STUDIO_GATEWAY_KEY", "STUDIO_VLLM_KEY"], "models": 3,
                      "consumers": 3, "consumer_noun": "character"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodels:\n  - model_group_name: x\n    model_name: m\n"
                   "    base_url: ftp://x\n    api_key: ${K}\n")
    out = run("validate", "-f", str(bad), "--format", "json")
    assert out.code == 1 and out.stderr == ""
    problem = json.loads(out.stdout)["problems"][0]
    assert (problem["file"], problem["line"]) == (str(bad), 5)
    assert problem["message"].startswith("models[0].base_url must be an http(s) URL")
    missing = json.loads(run("validate", "-f", str(tmp_path / "nope.yaml"), "--format", "json").stdout)
    assert missing["problems"][0] | {"text": ""} == {"file": str(tmp_path / "nope.yaml"), "line": None,
                                                     "message": "no such file; pass the manifest with -f PATH",
                                                     "text": ""}
    both = run("validate", "-f", "manifests/staging.yaml", "-f", str(bad), "--format", "json")
    assert both.code == 1 and [r["valid"] for r in json.loads(both.stdout)] == [True, False]


def test_validate_text_checks_every_manifest_and_names_every_problem(
        run: Callable[..., Result], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    out = run("validate", "-f", str(bad), "-f", "manifests/staging.yaml")
    assert out.code == 1
    assert "manifests/staging.yaml: valid (3 models, 2 characters)" in out.stdout
    assert f"{bad}:1: version must be 1" in out.stderr


def test_the_pre_commit_hook_runs_validate(tmp_path: Path) -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "convai-sync-validate" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
    entry = [str(Path(sys.executable).parent / hook["entry"].split()[0]), *hook["entry"].split()[1:]]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ninclude: [nowhere.yaml]\n")
    args = ["-f", "manifests/staging.yaml", "-f", "manifests/production.yaml"]
    assert subprocess.run([*entry, *args], cwd=ROOT, capture_output=True).returncode == 0
    failed = subprocess.run([*entry, *args, "-f", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{tmp_path / 'nowhere.yaml'}: no such file" in failed.stderr
    assert f"(included from {bad}:2)" in failed.stderr


def test_review_fingerprint_is_the_same_for_the_same_plan_and_differs_otherwise(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu, twin = make_emulator(), make_emulator()

    def fingerprint(name: str, manifest: Path = EXAMPLE, url: str = emu.url) -> str:
        out = tmp_path / name
        assert run("plan", "-f", str(manifest), "--api-url", url, "--out", str(out)).code == 0
        doc = json.loads(out.read_text())
        assert doc["saved_plan"]["review_fingerprint"] == review_fingerprint(doc)
        return review_fingerprint(doc)

    first = fingerprint("a.json")
    assert fingerprint("b.json") == first
    assert fingerprint("c.json", url=twin.url) == first  # another job, another URL: the same plan
    edited = tmp_path / "models.yaml"
    edited.write_text(EXAMPLE.read_text().replace("temperature: 0.4", "temperature: 0.5"))
    assert fingerprint("d.json", edited) != first
    renamed = tmp_path / "other.yaml"
    renamed.write_text(EXAMPLE.read_text())
    assert fingerprint("e.json", renamed) != first  # another environment
    reply = httpx.post(emu.url + "/llm-models/register", headers={"CONVAI-API-KEY": ACCOUNT_KEY},
                       json={"model_group_name": "by-hand", "model_name": "m", "api_key": "k-1",
                             "is_uncensored": False}, verify=False)
    assert reply.status_code == 200
    assert fingerprint("f.json") != first  # the account changed


def test_a_plan_saved_before_environments_uses_the_manifests_file_name(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    from convai_sync.saved_plan import load_saved_plan
    emu = make_emulator()
    planfile = tmp_path / "plan.json"
    assert run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--out", str(planfile)).code == 0
    doc = json.loads(planfile.read_text())
    del doc["saved_plan"]["environment"], doc["saved_plan"]["review_fingerprint"]
    planfile.write_text(json.dumps(doc))
    assert load_saved_plan(str(planfile)).environment == "models"
