"""`ping` (URL and key, one read, nothing else) and `import` (live models into
an existing manifest, the rest of the file untouched), on every platform."""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, EXAMPLES, Result
from convai_sync.providers.registry import platform

EXAMPLES = {"convai": EXAMPLE, "langbot": EXAMPLES / "langbot.yaml",
            "vapi": EXAMPLES / "vapi.yaml"}
UNMANAGED = {"convai": "legacy-mixtral", "langbot": "mistralai/Mixtral-8x7B-Instruct-v0.1",
             "vapi": "legacy-vllm"}  # live in each demo account, not in its example


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_ping_reads_once_and_writes_nothing(name: str, account, run: Callable[..., Result]) -> None:
    emu = account(name)
    out = run("ping", "--platform", name, "--api-url", emu.url)
    assert out.code == 0, out.output
    assert out.stdout.startswith(f"OK: {emu.url} answered and took the {platform(name).title} "
                                 "account key") and "1 request, nothing written." in out.stdout
    assert len(emu.requests) == 1 and emu.writes() == []
    by_manifest = run("ping", "-f", str(EXAMPLES[name]), "--api-url", emu.url)
    assert by_manifest.code == 0, by_manifest.output


def test_ping_with_a_wrong_key_exits_1_naming_the_call(account, run: Callable[..., Result],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    emu = account("convai", key="the-right-key")
    out = run("ping", "--api-url", emu.url)
    assert out.code == 1 and "HTTP 401" in out.stderr and "/llm-models/list" in out.stderr


def test_ping_platform_must_match_the_manifest(account, run: Callable[..., Result]) -> None:
    out = run("ping", "-f", str(EXAMPLE), "--platform", "vapi")
    assert out.code == 1 and "is a convai manifest, not vapi" in out.stderr


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_import_adds_one_live_model_and_leaves_the_rest_of_the_file(
        name: str, account, run: Callable[..., Result], tmp_path: Path) -> None:
    emu = account(name)
    manifest = tmp_path / "m.yaml"
    before = EXAMPLES[name].read_text()
    manifest.write_text(before)
    model = UNMANAGED[name]
    out = run("import", "-f", str(manifest), "--api-url", emu.url, model)
    assert out.code == 0, out.output
    assert emu.writes() == []
    after = manifest.read_text()
    ops = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines()).get_opcodes()
    assert {op for op, *_ in ops} == {"equal", "insert"}  # only lines added
    added = [line for op, _, _, j1, j2 in ops if op == "insert"
             for line in after.splitlines()[j1:j2]]
    assert model in added[0] and any("${" in line for line in added)
    var = added[[i for i, line in enumerate(added) if "${" in line][0]].split("${")[1].split("}")[0]
    assert f"  {var}  (key of model '{model}')" in out.stderr
    doc = json.loads(run("plan", "-f", str(manifest), "--api-url", emu.url, "--format", "json").stdout)
    assert not [c for c in doc["changes"] if c["action"] == "deregister"]  # it is managed now


def test_import_refuses_a_model_already_there_or_not_live(account, run: Callable[..., Result],
                                                          tmp_path: Path) -> None:
    emu = account("convai")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(EXAMPLE.read_text())
    out = run("import", "-f", str(manifest), "--api-url", emu.url, "studio-turbo", "nope")
    assert out.code == 1
    assert "model 'studio-turbo' is already in" in out.stderr
    assert "model 'nope' is not in the account" in out.stderr and "nothing was written" in out.stderr
    assert manifest.read_text() == EXAMPLE.read_text()


def test_import_into_an_empty_models_list(account, run: Callable[..., Result], tmp_path: Path) -> None:
    emu = account("convai")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\n# my models\nmodels: []\ncharacters: []\n")
    assert run("import", "-f", str(manifest), "--api-url", emu.url, "legacy-mixtral").code == 0
    text = manifest.read_text()
    assert text.startswith("version: 1\n# my models\nmodels:\n  - model_group_name: legacy-mixtral\n")
    assert text.endswith("characters: []\n")
