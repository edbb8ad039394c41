"""The committed JSON Schema (schema/manifest.schema.json) is what the pydantic
models generate, and it says what the loader says."""
from __future__ import annotations

import json
import re
from typing import Callable

import yaml

from conftest import EXAMPLE, ROOT, Result

SCHEMA = ROOT / "schema" / "manifest.schema.json"


def test_committed_schema_is_up_to_date(run: Callable[..., Result]) -> None:
    out = run("schema")
    assert out.code == 0, out.output
    assert SCHEMA.exists(), "run: convai-sync schema > schema/manifest.schema.json"
    assert SCHEMA.read_text("utf-8") == out.stdout, (
        "schema/manifest.schema.json is out of date with the manifest models; "
        "run: convai-sync schema > schema/manifest.schema.json")


def test_schema_identity_and_the_example_points_at_it() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"].startswith("convai-sync manifest")
    example = ROOT / "examples" / "models.yaml"  # the checkout's, where the relative path resolves
    assert example.read_text().splitlines()[0] == "# yaml-language-server: $schema=../schema/manifest.schema.json"
    assert (example.parent / "../schema/manifest.schema.json").resolve() == SCHEMA


def test_api_key_allows_only_an_env_reference() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    api_key = schema["$defs"]["ModelSpec"]["properties"]["api_key"]
    pattern = re.compile(api_key["pattern"])
    assert api_key["description"]
    for good in ("${STUDIO_VLLM_KEY}", "${_x1}"):
        assert pattern.search(good)
    for bad in ("sk-live-123", "${A}-suffix", "prefix${A}", "$A", "${1A}", "${}"):
        assert not pattern.search(bad), bad


def test_schema_knows_every_key_of_the_example_and_forbids_others() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    defs = schema["$defs"]
    example = yaml.safe_load(EXAMPLE.read_text())
    levels = [(schema, example), (defs["Settings"], example["settings"])]
    levels += [(defs["ModelSpec"], m) for m in example["models"]]
    levels += [(defs["CharacterSpec"], c) for c in example["characters"]]
    for part, data in levels:
        assert part["additionalProperties"] is False
        assert set(data) <= set(part["properties"]), set(data) - set(part["properties"])
        assert set(part.get("required", [])) <= set(data)
        for key in part["properties"]:
            assert part["properties"][key].get("description"), f"{key} has no description"
    assert set(schema["required"]) == {"version"}
    assert defs["Settings"]["properties"]["api_dialect"]["enum"] == ["auto", "llm-models", "custom-llm"]


def test_every_example_validates_and_the_platform_selects_its_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text("utf-8"))
    for example in sorted(EXAMPLE.parent.glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(example.read_text()), schema)
    langbot = yaml.safe_load((EXAMPLE.parent / "langbot.yaml").read_text())
    for wrong in ({"characters": []}, {"platform": "convai"}, {"platform": "nope"}):
        try:
            jsonschema.validate({**langbot, **wrong}, schema)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"the schema accepted a LangBot manifest with {wrong}")
