"""Finding 1 and 2 of issue 11: a key reaches a message escaped, encoded or cut,
and a key with a stray newline was printed in full by the HTTP library's error
(and retried). The scrubber knows every form; the key is checked before any request."""
from __future__ import annotations

import contextlib
import json
import string
from typing import Callable, Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings, strategies as st

from conftest import ACCOUNT_KEY, EXAMPLE, Result
from convai_sync.emulator import Emulator
from convai_sync.errors import ConvaiSyncError
from convai_sync.providers.convai.client import API as CONVAI
from convai_sync.providers.http import HttpSession
from convai_sync.providers.langbot.client import API as LANGBOT
from convai_sync.providers.vapi.client import API as VAPI
from convai_sync import secrets
from convai_sync.secrets import MIN_CUT, forms, remember, scrub

# Upper case, digits and a few symbols; the message around a key is lower case, so a
# leftover piece of the key cannot be mistaken for the surrounding words.
KEY_CHARS = string.ascii_uppercase + string.digits + "-_\\\n\r\t\x00\x1b\x7f"
SHAPES: list[Callable[[str], str]] = [
    lambda k: k,
    lambda k: f"illegal header value {k.encode()!r}",
    lambda k: f"request was {{'headers': {{'convai-api-key': {k!r}}}}}",
    lambda k: "echo: " + json.dumps({"api_key": k, "model": "x"}),
    lambda k: "get /llm-models/list?" + urlencode({"key": k}) + " -> 400",
    lambda k: f"error: {k} was refused",
]


@contextlib.contextmanager
def only_these_secrets() -> Iterator[None]:
    """The scrubber knows only what the block remembers (its registry is process-wide,
    and random keys must not mangle other tests' text, nor theirs this test's)."""
    saved = secrets._known, secrets._sorted
    secrets._known, secrets._sorted = set(), []
    try:
        yield
    finally:
        secrets._known, secrets._sorted = saved


def pieces(value: str) -> set[str]:
    """Every run of MIN_CUT characters of every form of `value`."""
    return {f[i:i + MIN_CUT] for f in forms(value) for i in range(len(f) - MIN_CUT + 1)}


@settings(max_examples=300, deadline=None)
@given(key=st.text(KEY_CHARS, min_size=8, max_size=40).filter(lambda k: len(k.strip()) >= 8),
       shape=st.sampled_from(SHAPES), prefix=st.text("abc :{", max_size=30),
       cut=st.one_of(st.none(), st.integers(0, 400)), ellipsis=st.sampled_from(["", "...", "\u2026"]))
def test_no_piece_of_a_key_survives_in_any_form_shape_or_cut(
        key: str, shape: Callable[[str], str], prefix: str, cut: int | None, ellipsis: str) -> None:
    text = prefix + shape(key)
    if cut is not None:
        text = text[:cut] + ellipsis
    with only_these_secrets():
        remember(key)
        out = scrub(text)
    leaked = [p for p in pieces(key) if p in out]
    assert not leaked, (text, out)


def test_ordinary_text_is_left_alone() -> None:
    with only_these_secrets():
        remember("Q7-WORD-KEY-93")
        remember("emulator-key")  # the emulators' keys are public: a text may end in "emulator"
        assert scrub("plan: 2 to change, against emulator") == "plan: 2 to change, against emulator"
        assert scrub("sent Q7-WORD-K...") == "sent (sensitive)..."


@pytest.mark.parametrize("stray", ["\n", "\r\n", "\t", " ", "\x1b"])
def test_an_account_key_with_a_stray_character_is_refused_before_any_request(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator],
        monkeypatch: pytest.MonkeyPatch, stray: str) -> None:
    emu = make_emulator()
    monkeypatch.setenv("CONVAI_API_KEY", ACCOUNT_KEY + stray)
    result = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert result.code == 1
    assert "CONVAI_API_KEY contains" in result.stderr and "Nothing was sent" in result.stderr
    assert not {p for p in pieces(ACCOUNT_KEY + stray) if p in result.output}, result.output
    assert emu.requests == []  # refused before the first request, never retried


@pytest.mark.parametrize("api", [CONVAI, LANGBOT, VAPI], ids=lambda a: a.name)
def test_every_platform_checks_its_key(api: object) -> None:
    with pytest.raises(ConvaiSyncError, match=f"{api.env_key} contains whitespace at position 5"):
        HttpSession(api, "http://127.0.0.1:9", {"X-Key": "abcd\n"}, "abcd\n")


def test_a_truncated_error_body_is_scrubbed_before_the_cut(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    # a plain-text 400 echoing the request: the key straddles the 200th character
    echo = "bad request: " + "h" * (190 - 29) + f"CONVAI-API-KEY: {ACCOUNT_KEY}"
    emu.override("/llm-models/list", raw=echo.encode(), status=400)
    result = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert result.code == 1 and "HTTP 400" in result.stderr
    assert not {p for p in pieces(ACCOUNT_KEY) if p in result.output}, result.output


def test_a_request_the_http_library_refuses_is_not_retried(make_emulator: Callable[..., Emulator]) -> None:
    from convai_sync.errors import ApiError
    emu = make_emulator()
    session = HttpSession(CONVAI, emu.url, {"CONVAI-API-KEY": ACCOUNT_KEY, "X-Trace": "a\nb"}, ACCOUNT_KEY)
    with pytest.raises(ApiError, match="refused before sending"):
        session.call("POST", "/llm-models/list", {})
    assert session.requests == 1 and emu.requests == []  # once, and never sent
    session.close()
