"""The bad-input corpus: every malformed manifest gives exactly this error,
naming the file and line, and never a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convai_sync.errors import ManifestError
from convai_sync.manifest import load_manifest

CORPUS = Path(__file__).parent / "bad_manifests"

EXPECTED = [
    ('account_key_as_model_key.yaml',
     "{file}:5: models[0].api_key is ${CONVAI_API_KEY}, your Convai account key: it would be sent to this model's base_url. Use the model provider's own key, in its own variable"),
    ('alias_bomb.yaml',  # "billion laughs": 9^8 values from 400 bytes
     "{file}:2: YAML aliases expand the document to more than 11,244 values; a manifest never needs that many, so write the values out instead of nesting aliases"),
    ('api_key_partial_reference.yaml',
     '{file}:5: models[0].api_key is a plaintext secret; write it as ${ENV_VAR} (for example ${MY_MODEL_KEY}) and put the key in that environment variable'),
    ('base_url_not_http.yaml',
     "{file}:5: models[0].base_url must be an http(s) URL such as https://api.openai.com/v1, not 'ftp://x'"),
    ('bad_dialect.yaml',
     "{file}:3: settings.api_dialect must be one of 'auto', 'llm-models' or 'custom-llm', not 'v2'"),
    ('builtin_group_name.yaml',
     "{file}:3: model_group_name 'gpt-4o' is a built-in model code; choose another name for your custom model"),
    ('char_id_number.yaml',
     '{file}:7: characters[0].char_id must be a string, not 12345 (a number)'),
    ('dangling_fallback.yaml',
     "{file}:3: fallback_model 'nowhere-model' is neither in this manifest's models nor a built-in model code; add it under models, or add the code to settings.builtin_models"),
    ('dangling_model_reference.yaml',
     "{file}:8: model 'my-trubo' is neither in this manifest's models nor a built-in model code; did you mean 'my-turbo'? add it under models, or add the code to settings.builtin_models"),
    ('duplicate_character.yaml',
     "{file}:9: duplicate char_id 'char-1' (also characters[0]); list each character once"),
    ('duplicate_display_name.yaml',
     "{file}:10: display_name 'Turbo' is also used by models[0]; Convai requires display names to be unique per account"),
    ('duplicate_model.yaml',
     "{file}:6: duplicate model_group_name 'my-turbo' (also models[0]); each model must be listed once"),
    ('duplicate_yaml_key.yaml',
     "{file}:6: duplicate key 'model_name' (first at line 4); keep only one"),
    ('empty.yaml',
     "{file}:1: the manifest is empty; it needs at least 'version: 1' (see examples/models.yaml)"),
    ('empty_group_name.yaml',
     '{file}:3: models[0].model_group_name must not be empty'),
    ('is_uncensored_string.yaml',
     "{file}:6: models[0].is_uncensored must be true or false, not 'yes' (a string)"),
    ('max_deregister_negative.yaml',
     '{file}:3: settings.max_deregister must be at least 0, got -1'),
    ('missing_model_name.yaml',
     "{file}:3: models[0] is missing the required field 'model_name'"),
    ('missing_version.yaml',
     "{file}:1: top level is missing the required field 'version'"),
    ('models_not_a_list.yaml',
     '{file}:3: models must be a list, not a mapping'),
    ('non_utf8.yaml',
     '{file}:3: not valid UTF-8 (byte 0xe9); save the file as UTF-8'),
    ('only_comments.yaml',
     "{file}:1: the manifest is empty; it needs at least 'version: 1' (see examples/models.yaml)"),
    ('plaintext_api_key.yaml',
     '{file}:5: models[0].api_key is a plaintext secret; write it as ${ENV_VAR} (for example ${MY_MODEL_KEY}) and put the key in that environment variable'),
    ('syntax_error.yaml',
     "{file}:4: YAML syntax error: this line is indented differently from the lines before it in the same block; indent the keys of one entry to the same column (with spaces)"),
    ('tab_indent.yaml',
     "{file}:3: YAML syntax error: a tab character; YAML is indented with spaces only"),
    ('key_indented_too_deep.yaml',
     "{file}:5: YAML syntax error: a ':' where a value was expected: a key is indented too deep, or a value contains ': ' and needs quotes"),
    ('api_key_without_braces.yaml',
     "{file}:5: models[0].api_key is $KEY_A, which is read as a plaintext secret; a variable is written with braces: ${KEY_A}"),
    ('temperature_negative.yaml',
     '{file}:9: characters[0].temperature must be between 0 and 1, got -0.1'),
    ('temperature_string.yaml',
     "{file}:9: characters[0].temperature must be a number, not 'hot' (a string)"),
    ('temperature_too_high.yaml',
     '{file}:9: characters[0].temperature must be between 0 and 1, got 1.5'),
    ('top_level_list.yaml',
     "{file}:1: the top level must be a mapping with 'version', 'settings', 'models' and 'characters', not a list"),
    ('top_level_scalar.yaml',
     "{file}:1: the top level must be a mapping with 'version', 'settings', 'models' and 'characters', not a string"),
    ('unclosed_quote.yaml',
     "{file}:4: YAML syntax error: a quoted value is never closed; add the closing quote"),
    ('unknown_model_key.yaml',
     "{file}:6: unknown key 'dispaly_name' in models[0]; did you mean 'display_name'?"),
    ('unknown_setting.yaml',
     "{file}:3: unknown key 'prun' in settings; did you mean 'prune'?"),
    ('unknown_top_key.yaml',
     "{file}:2: unknown key 'modles' in top level; did you mean 'models'?"),
    ('wrong_version.yaml',
     '{file}:1: version must be 1, not 2; this release reads manifest version 1'),
]


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(n for n, _ in EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name,message", EXPECTED, ids=[n for n, _ in EXPECTED])
def test_bad_manifest_error_is_exact(name: str, message: str) -> None:
    path = str(CORPUS / name)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == message.replace("{file}", path)


def test_huge_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 1_200_000)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == (f"{path}: the file is 11.4 MiB; manifests are limited to 10 MiB. "
                              "Is this the right file?")


def test_ordinary_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("""version: 1
models:
  - &vllm
    model_group_name: a
    model_name: m
    base_url: https://vllm.example/v1
    api_key: ${K}
  - <<: *vllm
    model_group_name: b
characters:
""" + "".join(f"  - {{char_id: c{i}, model_group_name: b}}\n" for i in range(3000)))
    loaded = load_manifest(path)
    assert [m.base_url for m in loaded.manifest.models] == ["https://vllm.example/v1"] * 2
    assert len(loaded.manifest.characters) == 3000


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope.yaml: no such file; pass the manifest with -f"):
        load_manifest(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["syntax_error.yaml", "plaintext_api_key.yaml", "non_utf8.yaml"])
def test_cli_reports_corpus_errors_without_traceback(name: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "convai_sync", "validate", "-f", str(CORPUS / name)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: {CORPUS / name}:")
    assert "Traceback" not in proc.stderr
    assert "sk-live-abc123" not in proc.stderr
