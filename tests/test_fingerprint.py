"""Fingerprints are stored in saved plans and compared by a later process (maybe a
later release): their canonical form is a contract, pinned here by value."""
from __future__ import annotations

from convai_sync.fingerprint import digest, manifest_fingerprint
from convai_sync.manifest import parse_manifest
from convai_sync.model import LiveState

MANIFEST = """version: 1
models:
  - model_group_name: m1
    model_name: gpt-4o-mini
    api_key: ${K1}
characters:
  - char_id: c1
    model_group_name: m1
    temperature: 0.5
"""


def test_digest_is_sha256_of_canonical_json_pinned_by_value() -> None:
    # sorted keys, no whitespace, non-ASCII escaped: '{"a":"\\u00e9","b":1,"c":[1,2]}'
    assert digest({"b": 1, "a": "\u00e9", "c": [1, 2]}) == \
        "sha256:41ad75dbd95ef4102c105b98acc684091afa0f2ec74af33913f6a087ea427e22"


def test_digest_ignores_key_order() -> None:
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_a_manifest_naming_the_default_platform_hashes_like_one_saved_before_platforms() -> None:
    implicit = parse_manifest(MANIFEST, "a.yaml")
    explicit = parse_manifest("platform: convai\n" + MANIFEST, "b.yaml")
    assert manifest_fingerprint(implicit) == manifest_fingerprint(explicit)
    meaning = implicit.manifest.model_dump(mode="json")
    del meaning["platform"]
    assert manifest_fingerprint(implicit) == digest(meaning)


def test_layout_and_comments_do_not_count_but_meaning_does() -> None:
    base = manifest_fingerprint(parse_manifest(MANIFEST, "a.yaml"))
    relaid = MANIFEST.replace("version: 1\n", "# a comment\nversion:   1\n\n")
    assert manifest_fingerprint(parse_manifest(relaid, "a.yaml")) == base
    changed = MANIFEST.replace("temperature: 0.5", "temperature: 0.6")
    assert manifest_fingerprint(parse_manifest(changed, "a.yaml")) != base


def _live() -> LiveState:
    from convai_sync.model import ConsumerState, LiveState, ModelState
    return LiveState("llm-models", {"x": ModelState("x", {"model_name": "m"})},
                     {"x": ConsumerState("x", "gpt-4o", {"temperature": 0.5}, "Xavier"),
                      "c2": ConsumerState("c2", "x", {"temperature": 0.1})})


def test_differences_name_each_object_by_its_own_kind() -> None:
    from convai_sync.fingerprint import live_differences, live_fingerprint
    from convai_sync.providers.convai import capabilities
    caps = capabilities("llm-models")
    live = _live()
    saved = live_fingerprint(live, caps)
    assert live_differences(saved, live, caps) == []
    live.models["x"].fields["model_name"] = "other"
    live.consumers["x"].fields["temperature"] = 0.9
    del live.consumers["c2"]
    # a model and a character may share an id: the model is never called by the character's name
    assert live_differences(saved, live, caps) == [
        "model x changed since the plan", "character c2 was removed since the plan",
        "character 'Xavier' (x) changed since the plan"]  # sorted by id


def test_a_saved_plan_without_characters_sees_every_live_one_as_added() -> None:
    from convai_sync.fingerprint import live_differences, live_fingerprint
    from convai_sync.providers.convai import capabilities
    caps = capabilities("llm-models")
    live = _live()
    saved = {"models": live_fingerprint(live, caps)["models"]}
    assert live_differences(saved, live, caps) == [
        "character c2 was added since the plan", "character 'Xavier' (x) was added since the plan"]
