"""`plan --format markdown` as a PR comment: snapshots of empty, ordinary,
destructive and oversized plans (real plans, read over HTTP from the emulator),
and the promise that a cut never breaks a tag or a code fence."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import ACCOUNT_KEY, EXAMPLE, EXAMPLES, Result, assert_no_secret
from convai_sync.emulator import Emulator
from convai_sync.plan import Plan
from convai_sync.render.markdown import PLAN_MARKER, render_plan_markdown

SNAPSHOTS = Path(__file__).parent / "snapshots"
MANIFEST = "examples/models.yaml"


def assert_snapshot(name: str, text: str) -> None:
    """Compare with tests/snapshots/NAME; UPDATE_SNAPSHOTS=1 rewrites it."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, "utf-8")
    assert path.exists(), f"missing snapshot {path}; run with UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text("utf-8"), (f"{name} differs from its snapshot; if the change is "
                                             "intended, run with UPDATE_SNAPSHOTS=1 and review the diff")


def assert_well_formed(md: str, limit: int | None = None) -> None:
    """Balanced <details>, closed code fences, nothing cut inside a tag."""
    if limit is not None:
        assert len(md) <= limit
    assert md.startswith(PLAN_MARKER + "\n")
    assert md.count("<details>") == md.count("</details>")
    opened = ""  # the open fence: closed only by a line of at least as many backticks
    for line in md.splitlines():
        fence = re.match(r"^(`{3,})(diff)?$", line)
        if opened and fence and not fence.group(2) and len(fence.group(1)) >= len(opened):
            opened = ""
        elif opened:
            assert "`" * len(opened) not in line, f"a line that closes its fence: {line}"
        elif fence:
            opened = fence.group(1)
        else:
            assert not line.startswith("```"), f"a stray fence: {line}"
            assert not re.search(r"<(?![^<>]*>)", line), f"a tag cut in two: {line}"
    assert not opened, "an unclosed code fence"
    assert md.endswith("\n") and not md.endswith("\n\n")


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)  # so the manifest is named examples/models.yaml, as in a workflow


def markdown_plan(run: Callable[..., Result], emu: Emulator, *extra: str,
                  manifest: str = MANIFEST) -> str:
    out = run("plan", "-f", manifest, "--api-url", emu.url, "--format", "markdown", *extra)
    assert out.code == 0, out.output
    assert_no_secret(out.output)
    return out.stdout


def test_empty_plan(in_root: None, make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    emu = make_emulator()
    assert run("apply", "-f", MANIFEST, "--api-url", emu.url, "--auto-approve").code == 0
    md = markdown_plan(run, emu)
    assert "No changes. The account matches the manifest." in md
    assert "<details>" not in md
    assert_well_formed(md)
    assert_snapshot("plan_empty.md", md)


def test_ordinary_plan_has_no_alert(in_root: None, make_emulator: Callable[..., Emulator],
                                    run: Callable[..., Result]) -> None:
    emu = make_emulator()
    assert run("apply", "-f", MANIFEST, "--api-url", emu.url, "--auto-approve").code == 0
    headers = {"CONVAI-API-KEY": ACCOUNT_KEY}
    httpx.post(emu.url + "/llm-models/update", headers=headers,
               json={"model_group_name": "studio-turbo", "display_name": "Turbo (renamed by hand)"}, verify=False)
    httpx.post(emu.url + "/character/update", headers=headers,
               json={"charID": "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11", "temperature": 0.75}, verify=False)
    md = markdown_plan(run, emu)
    assert "[!WARNING]" not in md
    assert "**Plan: 0 to register, 1 to update, 0 to deregister, 0 characters to rebind, 1 character to update.**" in md
    assert_well_formed(md)
    assert_snapshot("plan_ordinary.md", md)


def test_destructive_plan_warns_loudly(in_root: None, make_emulator: Callable[..., Emulator],
                                       run: Callable[..., Result]) -> None:
    emu = make_emulator()
    md = markdown_plan(run, emu)
    head = md.split("<details>")[0]  # visible without unfolding anything
    assert "> [!WARNING]" in head and "deregisters 1 model and replaces 1 model" in head
    assert "`legacy-mixtral` (deregister)" in head and "`studio-llama-70b` (replace)" in head
    assert "Plan: 1 to register, 1 to update, 1 to replace, 1 to deregister" in head
    assert "<summary>Show all 11 changes, in apply order</summary>" in md
    assert "(sensitive)" in md
    assert_well_formed(md)
    assert_snapshot("plan_destructive.md", md)


def big_account(n: int) -> tuple[dict, str]:
    """A seed with n characters on a model the manifest prunes, and that manifest."""
    seed = {"models": [{"model_group_name": "keeper", "model_name": "m1", "base_url": "https://a.example/v1",
                        "api_key": "k-keep-1"},
                       {"model_group_name": "old-model", "model_name": "m2", "base_url": "https://a.example/v1",
                        "api_key": "k-old-2"}],
            "characters": [{"character_id": f"char-{i:04d}", "character_name": f"Extra <b>{i}</b> ```",
                            "model_group_name": "old-model", "temperature": 0.5} for i in range(n)]}
    manifest = ("version: 1\nsettings:\n  prune: true\n  fallback_model: gpt-4o-mini\nmodels:\n"
                "  - model_group_name: keeper\n    model_name: m1\n    base_url: https://a.example/v1\n"
                "    api_key: ${KEEPER_KEY}\n    display_name: keeper\n")
    return seed, manifest


def test_oversized_plan_is_cut_between_changes_with_a_note(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed, manifest = big_account(60)
    emu = make_emulator(seed=seed)
    monkeypatch.chdir(tmp_path)
    Path("models.yaml").write_text(manifest)
    md = markdown_plan(run, emu, "--max-chars", "3000", "--full-plan-url", "https://ci.example/run/7",
                       manifest="models.yaml")
    assert_well_formed(md, limit=3000)
    assert "> [!NOTE]" in md and "of 61 changes" in md
    assert "[Open the workflow run](https://ci.example/run/7)" in md
    assert "<summary>Show the first " in md
    assert "&lt;b&gt;" not in md.split("<details>")[0]  # names stay inside code fences
    assert_snapshot("plan_oversized.md", md)

    full = markdown_plan(run, emu, "--max-chars", "0", manifest="models.yaml")
    assert len(full) > 3000 and "[!NOTE]" not in full
    assert full.count("@@ character") == 60


def test_every_limit_gives_a_well_formed_document(make_emulator: Callable[..., Emulator],
                                                  run: Callable[..., Result], tmp_path: Path) -> None:
    seed, manifest = big_account(25)
    emu = make_emulator(seed=seed)
    (tmp_path / "m.yaml").write_text(manifest)
    out = run("plan", "-f", str(tmp_path / "m.yaml"), "--api-url", emu.url, "--format", "json")
    plan = Plan.from_json(json.loads(out.stdout))
    full = render_plan_markdown(plan, limit=None)
    shown = []
    for limit in range(700, len(full) + 200, 97):
        md = render_plan_markdown(plan, limit=limit)
        assert_well_formed(md, limit=limit)
        shown.append(len(re.findall(r"^@@ ", md, re.M)))
    assert shown == sorted(shown) and shown[0] < 26 == shown[-1]  # more room, more changes; finally all
    with pytest.raises(ValueError, match="too small"):
        render_plan_markdown(plan, limit=100)


def test_too_small_max_chars_is_a_clear_error(run: Callable[..., Result]) -> None:
    out = run("plan", "-f", str(EXAMPLE), "--emulator", "--format", "markdown", "--max-chars", "10")
    assert out.code == 1 and "--max-chars 10 is too small" in out.stderr
