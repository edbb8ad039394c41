"""Fingerprints are stored in saved plans and compared by a later process (maybe a
later release): their canonical form is a contract, pinned here by value."""
from __future__ import annotations

from convai_sync.fingerprint import digest, manifest_fingerprint
from convai_sync.manifest import parse_manifest

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
