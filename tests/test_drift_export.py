"""`drift` (exit 0 in sync, 2 drift, 1 error; honest about unreadable fields)
and `export` (adoption: plan of the exported manifest shows zero changes)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, Result, assert_no_secret, example_for
from convai_sync.emulator import Emulator, demo_seed
from convai_sync.export import key_variable

DIALECTS = ["llm-models", "custom-llm"]


def drift(run: Callable[..., Result], emu: Emulator, *extra: str, manifest: Path = EXAMPLE) -> Result:
    return run("drift", "-f", str(manifest), "--api-url", emu.url, *extra)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_drift_exit_codes_and_unchecked_fields(dialect: str, make_emulator: Callable[..., Emulator],
                                               run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator(dialect)
    example = example_for(dialect, tmp_path)
    drifted = drift(run, emu, manifest=example)
    assert drifted.code == 2, drifted.output
    assert drifted.stdout.startswith(f"Drift: the account differs from {example}.")
    assert "Plan: 1 to register" in drifted.stdout
    assert "  api_key: write-only, cannot be checked (studio-turbo, studio-llama-70b)" in drifted.stdout
    assert emu.writes() == []  # drift never writes

    assert run("apply", "-f", str(example), "--api-url", emu.url, "--auto-approve").code == 0
    in_sync = drift(run, emu, manifest=example)
    assert in_sync.code == 0, in_sync.output
    assert in_sync.stdout.startswith(f"In sync: the account matches {example}.")
    assert "api_key: write-only, cannot be checked" in in_sync.stdout
    unreadable = ("display_name: not returned by the custom-llm dialect, cannot be checked",
                  "is_uncensored: not returned by the custom-llm dialect, cannot be checked")
    if dialect == "custom-llm":
        assert all(line in in_sync.stdout for line in unreadable)
        # the account still shows the old display name, but it cannot be read: never drift
        assert emu.models()["studio-turbo"]["display_name"] == "Turbo (Private)"
    else:
        assert not any(line in in_sync.stdout for line in unreadable)
    assert_no_secret(drifted.output, in_sync.output)


def test_drift_json_and_markdown(make_emulator: Callable[..., Emulator], run: Callable[..., Result],
                                 tmp_path: Path) -> None:
    emu = make_emulator("custom-llm")
    example = example_for("custom-llm", tmp_path)
    as_json = drift(run, emu, "--format", "json", manifest=example)
    assert as_json.code == 2
    doc = json.loads(as_json.stdout)
    assert doc["in_sync"] is False and doc["plan"]["summary"]["register"] == 1
    assert [u["field"] for u in doc["unchecked"]] == ["api_key", "display_name", "is_uncensored"]

    md = drift(run, emu, "--format", "markdown", manifest=example)
    assert md.code == 2
    assert md.stdout.startswith("<!-- convai-sync:drift -->\n")
    assert "**Drift detected:**" in md.stdout and "> [!WARNING]" in md.stdout
    assert "- `api_key`: write-only, cannot be checked" in md.stdout
    assert "convai-sync:plan" not in md.stdout
    assert emu.writes() == []


@pytest.mark.parametrize("problem", ["bad-key", "unreachable", "bad-manifest", "bad-option"])
def test_drift_errors_exit_1(problem: str, make_emulator: Callable[..., Emulator],
                             run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
                             tmp_path: Path) -> None:
    emu = make_emulator()
    args = ["drift", "-f", str(EXAMPLE), "--api-url", emu.url]
    if problem == "bad-key":
        monkeypatch.setenv("CONVAI_API_KEY", "not-the-key-000")
    elif problem == "unreachable":
        args[-1] = "http://127.0.0.1:9"
    elif problem == "bad-manifest":
        (tmp_path / "m.yaml").write_text("version: 1\nmodels: 3\n")
        args[2] = str(tmp_path / "m.yaml")
    else:
        args.append("--no-such-option")
    out = run(*args)
    assert out.code == 1, out.output
    assert out.stderr.strip() and "Traceback" not in out.output
    assert emu.writes() == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_export_then_plan_shows_zero_changes(dialect: str, make_emulator: Callable[..., Emulator],
                                             run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator(dialect)
    target = tmp_path / "adopted.yaml"
    out = run("export", "-o", str(target), "--api-url", emu.url)
    assert out.code == 0, out.output
    text = target.read_text()
    assert text.startswith("# convai-sync manifest exported from ")
    for var in ("CONVAI_MODEL_STUDIO_TURBO_API_KEY", "CONVAI_MODEL_STUDIO_LLAMA_70B_API_KEY",
                "CONVAI_MODEL_LEGACY_MIXTRAL_API_KEY"):
        assert f"#   {var}" in text and f"api_key: ${{{var}}}" in text and var in out.stderr
    assert f"api_dialect: {dialect}" in text and "prune: false" in text
    assert "sk-demo-live" not in text + out.output  # keys are write-only; nothing to leak
    assert text.count("- char_id:") == len(demo_seed()["characters"])
    assert emu.writes() == []

    planned = run("plan", "-f", str(target), "--api-url", emu.url, "--detailed-exitcode")
    assert planned.code == 0, planned.output
    assert "No changes. The account matches the manifest." in planned.stdout
    assert run("validate", "-f", str(target)).code == 0


def test_export_bound_to_custom_and_dangling_characters(make_emulator: Callable[..., Emulator],
                                                        run: Callable[..., Result]) -> None:
    seed = demo_seed()
    seed["characters"].append({"character_id": "ghost-1", "character_name": "Ghost",
                               "model_group_name": "deleted-model", "temperature": 0.5})
    emu = make_emulator(seed=seed)
    out = run("export", "--characters", "bound-to-custom", "--api-url", emu.url)
    assert out.code == 0, out.output
    assert "Guide Ila" not in out.stdout and "Archivist Oren" in out.stdout  # gpt-4o is built in
    assert out.stdout.count("- char_id:") == 5

    everything = run("export", "--api-url", emu.url)
    assert "ghost-1" not in everything.stdout
    assert "character 'Ghost' (ghost-1) points at model 'deleted-model'" in everything.stderr


def test_export_refuses_to_overwrite(make_emulator: Callable[..., Emulator], run: Callable[..., Result],
                                     tmp_path: Path) -> None:
    emu = make_emulator()
    target = tmp_path / "models.yaml"
    target.write_text("keep me\n")
    out = run("export", "-o", str(target), "--api-url", emu.url)
    assert out.code == 1 and "already exists" in out.stderr
    assert target.read_text() == "keep me\n"
    assert run("export", "-o", str(target), "--force", "--api-url", emu.url).code == 0
    assert target.read_text().startswith("# convai-sync manifest")


def test_key_variable_names_are_valid_and_unique() -> None:
    taken: set[str] = set()
    assert key_variable("studio-turbo", taken) == "CONVAI_MODEL_STUDIO_TURBO_API_KEY"
    assert key_variable("studio_turbo", taken) == "CONVAI_MODEL_STUDIO_TURBO_2_API_KEY"
    assert key_variable("ümlaut.model/v2", taken) == "CONVAI_MODEL_MLAUT_MODEL_V2_API_KEY"
    assert key_variable("---", taken) == "CONVAI_MODEL_MODEL_API_KEY"


def test_drift_with_a_tripped_brake_says_apply_would_refuse_and_why(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    strict = tmp_path / "models.yaml"  # the plan deregisters or replaces 2 models
    strict.write_text(EXAMPLE.read_text().replace("max_deregister: 3", "max_deregister: 1"))
    out = drift(run, emu, manifest=strict)
    assert out.code == 2
    assert "Applying the manifest would make these changes" not in out.stdout
    assert ("apply would refuse to make these changes, as a safety brake is tripped: the plan "
            "deregisters or replaces 2 models (legacy-mixtral, studio-llama-70b), more than "
            "settings.max_deregister = 1") in out.stdout
    doc = json.loads(drift(run, emu, "--format", "json", manifest=strict).stdout)
    assert doc["in_sync"] is False and "max_deregister = 1" in doc["apply_refused"][0]
    md = drift(run, emu, "--format", "markdown", manifest=strict).stdout
    assert "apply would refuse to make these changes" in md
    # with the flag apply would be run with, drift says apply would make them
    allowed = drift(run, emu, "--allow-deregister", manifest=strict)
    assert "Applying the manifest would make these changes:" in allowed.stdout
    assert json.loads(drift(run, emu, "--format", "json").stdout)["apply_refused"] == []
    assert emu.writes() == []
