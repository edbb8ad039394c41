"""The secret wrapper and the scrubber, unit by unit (the canary tests check the
commands end to end; test_lost_replies checks a key the API quotes back)."""
from __future__ import annotations

import threading

import pytest

from convai_sync import secrets
from convai_sync.secrets import ENV_REF, SENSITIVE, Secret, remember, scrub


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_known", set())
    monkeypatch.setattr(secrets, "_sorted", [])


def test_a_secret_never_prints_its_value() -> None:
    s = Secret("sk-live-abcdef", "OPENAI_KEY")
    assert (str(s), repr(s), f"{s}") == ("(sensitive)", "Secret(OPENAI_KEY)", "(sensitive)")
    assert s.reveal() == "sk-live-abcdef" and s.ref == "OPENAI_KEY"
    assert SENSITIVE == "(sensitive)"


def test_a_resolved_secret_is_scrubbed_from_any_text() -> None:
    Secret("sk-live-abcdef", "K")
    assert scrub("error: key sk-live-abcdef refused (sk-live-abcdef)") == \
        "error: key (sensitive) refused ((sensitive))"


def test_nothing_known_leaves_text_untouched() -> None:
    assert scrub("sk-live-abcdef") == "sk-live-abcdef"


def test_longer_secrets_are_scrubbed_before_their_prefixes() -> None:
    remember("abcd")
    remember("abcdefgh")
    assert scrub("x abcdefgh y abcd") == "x (sensitive) y (sensitive)"


def test_a_secret_inside_another_never_leaves_a_piece_of_the_longer_one() -> None:
    remember("key-1234")           # sorts after the longer one by text, before it by length
    remember("a-key-1234-long")
    assert scrub("x a-key-1234-long y key-1234") == "x (sensitive) y (sensitive)"


def test_values_shorter_than_four_characters_are_not_scrubbed() -> None:
    remember("abc")
    remember("")
    remember("wxyz")
    assert scrub("abc wxyz") == "abc (sensitive)"
    assert secrets._known == {"wxyz"}


def test_remember_is_safe_from_many_threads() -> None:
    threads = [threading.Thread(target=remember, args=(f"key-{i:04d}",)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(secrets._known) == 50
    assert scrub("key-0049") == "(sensitive)"


@pytest.mark.parametrize("text,var", [("${OPENAI_KEY}", "OPENAI_KEY"), ("${_k9}", "_k9"),
                                      ("${9K}", None), ("$OPENAI_KEY", None), ("x${K}", None),
                                      ("${K}x", None), ("${K-1}", None)])
def test_only_a_whole_env_reference_is_one(text: str, var: str | None) -> None:
    match = ENV_REF.match(text)
    assert (match.group(1) if match else None) == var
