"""The scrubber on a key cut short, exactly: a prefix of it ending a text (before
or after an ellipsis or trailing whitespace), a suffix of it starting one, and
the MIN_CUT boundary. (test_secret_forms checks, over random keys and shapes, that
no piece survives; these pin down what is replaced and what is left.)"""
from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from convai_sync import secrets
from convai_sync.secrets import MIN_CUT, forms, remember, scrub

KEY = "sk-CUTTEST-0123456789"  # 21 characters


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_known", set())
    monkeypatch.setattr(secrets, "_sorted", [])
    remember(KEY)


@pytest.mark.parametrize("text,scrubbed", [
    ("key " + KEY[:12], "key (sensitive)"),
    ("key " + KEY[:-1], "key (sensitive)"),             # all but its last character
    ("key " + KEY[:12] + "  \n", "key (sensitive)  \n"),  # printed with a newline
    ("key " + KEY[:12] + "...", "key (sensitive)..."),
    ("key " + KEY[:12] + "\u2026", "key (sensitive)\u2026"),
    ("key " + KEY[:12] + " ...", "key (sensitive) ..."),
    ("key " + KEY[:12] + " \u2026 \n", "key (sensitive) \u2026 \n"),
    ("key " + KEY[:MIN_CUT], "key (sensitive)"),
    ("key " + KEY[:MIN_CUT - 1], "key " + KEY[:MIN_CUT - 1]),  # too short to tell from text
])
def test_a_prefix_ending_the_text_is_replaced(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


@pytest.mark.parametrize("text,scrubbed", [
    (KEY[1:] + " was refused", "(sensitive) was refused"),   # all but its first character
    (KEY[-12:] + " was refused", "(sensitive) was refused"),
    (KEY[-MIN_CUT:] + " was refused", "(sensitive) was refused"),
    (KEY[-(MIN_CUT - 1):] + " was refused", KEY[-(MIN_CUT - 1):] + " was refused"),
])
def test_a_suffix_starting_the_text_is_replaced(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


def test_a_cut_is_replaced_from_where_it_starts_even_when_the_key_repeats_itself() -> None:
    remember("abcdefabcdefabcdef-Z9")
    assert scrub("key abcdefabcdef") == "key (sensitive)"  # not "key abcdef(sensitive)"


def test_a_key_holding_an_ellipsis_is_still_found_cut_at_it() -> None:
    remember("sk-ab...cdefghijk")
    assert scrub("x sk-ab...") == "x (sensitive)"


def test_a_key_of_min_cut_characters_is_only_replaced_whole() -> None:
    remember("qwerty")
    assert scrub("x qwert qwerty") == "x qwert (sensitive)"


def test_a_cut_that_is_only_long_enough_with_the_keys_own_space_is_replaced() -> None:
    remember("sk-ab defghijkl")  # "sk-ab" alone is shorter than MIN_CUT; "sk-ab " is not
    assert scrub("x sk-ab ...") == "x (sensitive)..."


def test_the_first_place_a_cut_can_start_wins_past_a_false_start() -> None:
    remember("abcdefabcdefabcdef-Z9")
    # "abcdefQ..." starts like the key but is not it; the cut starts at the next "abcdef"
    assert scrub("key abcdefQabcdefabcdef") == "key abcdefQ(sensitive)"


def test_a_suffix_of_any_length_is_tried_longest_first() -> None:
    assert scrub(KEY[-7:] + " was refused, twice") == "(sensitive) was refused, twice"


def test_a_cut_may_start_one_character_after_a_false_start() -> None:
    remember("aaaaaa-Z9-key-0")
    assert scrub("x aaaaaaa-Z9") == "x a(sensitive)"


def test_the_repr_and_the_bytes_repr_of_a_key_with_unusual_characters_are_scrubbed() -> None:
    key = "sk-\u00e9\x1b-12345678"  # non-ASCII and a control character: every escape differs
    remember(key)
    assert scrub(f"refused {key!r}") == "refused '(sensitive)'"
    assert scrub(f"Illegal header value {key.encode()!r}") == "Illegal header value b'(sensitive)'"
    assert scrub("echo " + json.dumps({"api_key": key})) == 'echo {"api_key": "(sensitive)"}'
    assert scrub("echo " + json.dumps({"api_key": key}, ensure_ascii=False)) == 'echo {"api_key": "(sensitive)"}'


def test_both_url_encodings_of_a_key_are_scrubbed() -> None:
    key = "sk-a/b c-12345678"  # a slash and a space: each encoding differs from the other
    remember(key)
    assert scrub("GET /keys/" + quote(key, safe="")) == "GET /keys/(sensitive)"
    assert scrub("GET /?key=" + quote_plus(key)) == "GET /?key=(sensitive)"


def test_a_value_too_short_to_scrub_is_remembered_in_no_form() -> None:
    remember("a b")  # its URL encoding, a%20b, would be long enough
    assert scrub("x a%20b a b") == "x a%20b a b"
    assert secrets._known == set(forms(KEY))
