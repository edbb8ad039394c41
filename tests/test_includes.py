"""Manifest includes: per-environment manifests share models without copying
them; every error names the file and line where the value is written and the
chain that included it; cycles are refused."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, Result
from convai_sync.errors import ManifestError
from convai_sync.manifest import load_manifest

COMMON = """\
version: 1
settings:
  fallback_model: gpt-4o-mini
  max_deregister: 5
models:
  - model_group_name: turbo
    model_name: gpt-4o-mini
    base_url: https://gw.example.com/v1
    api_key: ${GW_KEY}
  - model_group_name: llama
    model_name: llama-3
    base_url: https://vllm.example.com/v1
    api_key: ${VLLM_KEY}
"""


def write(tmp: Path, **files: str) -> None:
    for name, text in files.items():
        path = tmp / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def problems(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return caught.value.problems


def test_overlay_merges_settings_by_key_and_lists_by_identity(tmp_path: Path) -> None:
    write(tmp_path, **{"common.yaml": COMMON, "staging.yaml": """\
version: 1
include: [common.yaml]
settings:
  prune: true
models:
  - model_group_name: llama
    base_url: https://vllm.staging.example.com/v1
  - model_group_name: extra
    model_name: m
    base_url: https://x.example.com/v1
    api_key: ${GW_KEY}
characters:
  - char_id: c1
    model_group_name: llama
"""})
    loaded = load_manifest(tmp_path / "staging.yaml")
    m = loaded.manifest
    assert (m.settings.prune, m.settings.fallback_model, m.settings.max_deregister) == (True, "gpt-4o-mini", 5)
    assert [x.model_group_name for x in m.models] == ["turbo", "llama", "extra"]
    llama = m.models[1]
    assert (llama.model_name, llama.base_url) == ("llama-3", "https://vllm.staging.example.com/v1")
    staging, common = str(tmp_path / "staging.yaml"), str(tmp_path / "common.yaml")
    # each value's line is in the file that wrote it
    assert loaded.where("models", 1, "base_url") == f"{staging}:7"
    assert loaded.where("models", 1, "model_name") == f"{common}:11"
    assert loaded.where("models", 2) == f"{staging}:8"
    assert loaded.where("settings", "max_deregister") == f"{common}:4"
    assert loaded.where("settings", "prune") == f"{staging}:4"
    assert loaded.where("characters", 0) == f"{staging}:13"
    assert loaded.environment == "staging"


def test_an_error_in_an_included_file_names_it_and_the_chain(tmp_path: Path) -> None:
    bad = COMMON.replace("https://vllm.example.com/v1", "ftp://vllm")
    write(tmp_path, **{"shared__models.yaml": bad,
                       "shared__base.yaml": "version: 1\ninclude: [models.yaml]\n",
                       "prod.yaml": "version: 1\n# the shared models\ninclude: [shared/base.yaml]\n"})
    found = problems(tmp_path / "prod.yaml")
    models, base, prod = (str(tmp_path / p) for p in ("shared/models.yaml", "shared/base.yaml", "prod.yaml"))
    assert found == [f"{models}:12: models[1].base_url must be an http(s) URL such as "
                     f"https://api.openai.com/v1, not 'ftp://vllm' (included from {base}:2, "
                     f"included from {prod}:3)"]


def test_an_override_error_names_the_including_file(tmp_path: Path) -> None:
    write(tmp_path, **{"common.yaml": COMMON,
                       "dev.yaml": "version: 1\ninclude: [common.yaml]\nmodels:\n"
                                   "  - model_group_name: turbo\n    temperature: 3\n"})
    found = problems(tmp_path / "dev.yaml")
    assert len(found) == 1 and found[0].startswith(f"{tmp_path / 'dev.yaml'}:5: unknown key 'temperature' "
                                                    "in models[0]"), found


def test_a_model_listed_twice_in_one_file_is_still_a_duplicate(tmp_path: Path) -> None:
    twice = ("  - model_group_name: extra\n    model_name: m\n    base_url: https://x.example.com/v1\n"
             "    api_key: ${GW_KEY}\n")
    write(tmp_path, **{"common.yaml": COMMON,
                       "dev.yaml": "version: 1\ninclude: [common.yaml]\nmodels:\n" + twice + twice})
    assert problems(tmp_path / "dev.yaml") == [f"{tmp_path / 'dev.yaml'}:8: duplicate model_group_name "
                                                "'extra' (also models[2]); each model must be listed once"]


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "version: 1\ninclude: [b.yaml]\n", "b.yaml": "include: [a.yaml]\n"},
     "{b}:1: include cycle: {a} -> {b} -> {a}; remove one of these includes"),
    ({"a.yaml": "version: 1\ninclude: [a.yaml]\n"},
     "{a}:2: include cycle: {a} -> {a}; remove one of these includes"),
    ({"a.yaml": "version: 1\ninclude: [missing.yaml]\n"},
     "{missing}: no such file; pass the manifest with -f PATH (included from {a}:2)"),
    ({"a.yaml": "version: 1\ninclude: models.yaml\n"},
     "{a}:2: include must be a list of file names relative to this file, such as [models.common.yaml]"),
    ({"a.yaml": "version: 1\ninclude: [b.yaml]\n", "b.yaml": "platform: vapi\n"},
     "{b}:1: this file is for platform 'vapi' but the manifest including it is for 'convai'; a "
     "manifest can only include files of its own platform (included from {a}:2)"),
    ({"a.yaml": "version: 1\ninclude: [b.yaml]\n", "b.yaml": "models: [\n"},
     "{b}:2: YAML syntax error"),
])
def test_bad_includes_are_refused_with_file_and_line(files: dict[str, str], message: str,
                                                     tmp_path: Path) -> None:
    write(tmp_path, **files)
    names = {p: str(tmp_path / f"{p}.yaml") for p in ("a", "b", "missing")}
    found = problems(tmp_path / "a.yaml")
    assert len(found) == 1 and found[0].startswith(message.format(**names)), found


def test_cycle_is_named_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, **{"a.yaml": "version: 1\ninclude: [b.yaml]\n", "b.yaml": "include: [a.yaml]\n"})
    monkeypatch.chdir(tmp_path)
    assert problems(Path("a.yaml")) == ["b.yaml:1: include cycle: a.yaml -> b.yaml -> a.yaml; remove "
                                        "one of these includes (included from a.yaml:2)"]


def test_consumers_merge_by_their_platforms_identity(tmp_path: Path) -> None:
    common = ("version: 1\nplatform: langbot\nmodels:\n  - key: m\n    name: M\n    requester: openai-chat-completions\n"
              "    base_url: https://x.example.com/v1\n    api_keys: ['${K}']\npipelines:\n"
              "  - uuid: 11111111-1111-4111-8111-111111111111\n    model: m\n")
    write(tmp_path, **{"common.yaml": common, "lb.yaml": "version: 1\nplatform: langbot\ninclude: [common.yaml]\n"
                       "pipelines:\n  - uuid: 11111111-1111-4111-8111-111111111111\n    model: m\n"})
    loaded = load_manifest(tmp_path / "lb.yaml")
    assert len(loaded.manifest.pipelines) == 1
    assert loaded.where("pipelines", 0, "model") == f"{tmp_path / 'lb.yaml'}:6"


def test_the_example_environments_share_the_common_models(run: Callable[..., Result]) -> None:
    out = run("validate", "-f", "manifests/staging.yaml", "-f", "manifests/production.yaml")
    assert out.code == 0, out.output
    staging = load_manifest(ROOT / "manifests" / "staging.yaml")
    production = load_manifest(ROOT / "manifests" / "production.yaml")
    assert [m.model_group_name for m in staging.manifest.models] == \
        [m.model_group_name for m in production.manifest.models]
    assert (staging.environment, production.environment) == ("staging", "production")


def test_includes_stay_inside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    write(repo, **{"shared__common.yaml": COMMON, "manifests__prod.yaml": "version: 1\ninclude: [../shared/common.yaml]\n"})
    monkeypatch.chdir(repo)
    assert len(load_manifest("manifests/prod.yaml").manifest.models) == 2  # ../ inside the working tree
    (tmp_path / "secret.yaml").write_text("token: abc\n")
    for ref in ("../../secret.yaml", str(tmp_path / "secret.yaml"), "/proc/self/environ"):
        (repo / "manifests" / "bad.yaml").write_text(f"version: 1\ninclude: ['{ref}']\n")
        assert problems(Path("manifests/bad.yaml")) == [
            f"manifests/bad.yaml:2: include '{ref}' is outside the manifest's directory and the working "
            "directory; include files of this repository, by relative path"]
    (repo / "manifests" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    (repo / "manifests" / "bad.yaml").write_text("version: 1\ninclude: [link.yaml]\n")
    assert "is outside the manifest's directory" in problems(Path("manifests/bad.yaml"))[0]
