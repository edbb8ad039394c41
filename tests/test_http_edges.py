"""The shared HTTP session's rarer exits, over real HTTP against the Convai
emulator: a run-wide pause longer than the call may wait, a reply too large to
hold, a request the HTTP library refuses to send, a 5xx that says when to come
back, and Retry-After values at their edges. Each names the call and says what
to do; none waits longer than it must. Also the checks before any request: the
credentials of an API URL (dropped, and every piece of them scrubbed) and an
account key no HTTP header can carry."""
from __future__ import annotations

import re
import time
import uuid
from email.utils import formatdate
from typing import Callable

import httpx
import pytest

from conftest import ACCOUNT_KEY
from convai_sync.emulator import Emulator
from convai_sync import secrets
from convai_sync.errors import ApiError, ConvaiSyncError
from convai_sync.providers import transport
from convai_sync.providers.convai.client import API
from convai_sync.providers.http import HttpSession, _retry_after, checked_url
from convai_sync.retry import RetryPolicy
from convai_sync.secrets import scrub

QUICK = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002, max_total=0)


def session_for(emu: Emulator, headers: dict[str, str] | None = None,
                retry: RetryPolicy = QUICK) -> HttpSession:
    return HttpSession(API, emu.url, headers or {"CONVAI-API-KEY": ACCOUNT_KEY}, ACCOUNT_KEY, retry=retry)


def test_a_pause_longer_than_the_call_may_wait_gives_up_without_sending(
        make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    emu.override("/character/list", {"message": "slow down"}, status=429, headers={"Retry-After": "100"})
    s = session_for(emu)
    with pytest.raises(ApiError) as info:
        # a write, so a possibly-landed check would be asked: a pause is never ambiguous
        s.call("POST", "/character/list", {}, "character list", landed=lambda: True)
    assert re.fullmatch(
        r"POST /character/list \(character list\) failed: HTTP 429: the API asked to pause past this "
        r"request's deadline \(--retry-max-time\) \(gave up after 3 attempts in \ds\)\n  the API kept "
        r"rate-limiting; wait a little and run again, or lower --parallelism", str(info.value)), str(info.value)
    assert len(emu.requests) == 1  # the 429 itself; the other two attempts never went out
    s.close()


def test_a_reply_too_large_is_refused_naming_the_url_variable(
        make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_REPLY_BYTES", 1024 * 1024)
    emu = make_emulator()
    emu.override("/character/list", raw=b"[" + b" " * 65535, repeat=17)  # just over 1 MiB
    s = session_for(emu)
    with pytest.raises(ApiError) as info:
        s.call("POST", "/character/list", {}, "character list")
    assert str(info.value) == ("POST /character/list (character list) failed: no response: the reply is "
                               "larger than 1 MiB; stopped reading it\n  is CONVAI_API_URL pointing at "
                               "the Convai API?")
    assert len(emu.requests) == 1  # not retried
    s.close()


def test_a_request_the_http_library_refuses_is_a_bug_report_without_the_key(
        make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    s = session_for(emu, {"CONVAI-API-KEY": ACCOUNT_KEY + "\n"})  # a header no HTTP library sends
    with pytest.raises(ApiError) as info:
        s.call("POST", "/character/list", {}, "character list")
    text = str(info.value)
    assert text.startswith("POST /character/list (character list) failed: no response: the request was "
                           "refused before sending: Illegal header value b'(sensitive)")
    assert text.endswith("\n  this is a bug in convai-sync; please report it")
    assert ACCOUNT_KEY not in text and emu.requests == []
    s.close()


def test_a_5xx_with_retry_after_waits_that_long_and_the_last_attempt_gives_up_at_once(
        make_emulator: Callable[..., Emulator], caplog: pytest.LogCaptureFixture) -> None:
    emu = make_emulator()
    emu.override("/character/list", {"message": "maintenance"}, status=503, headers={"Retry-After": "0.1"})
    s = session_for(emu, retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002, max_total=5))
    started = time.monotonic()
    with caplog.at_level("INFO", logger="convai_sync"), pytest.raises(ApiError) as info:
        s.call("POST", "/character/list", {}, "character list")
    assert time.monotonic() - started >= 0.1  # the policy alone would wait at most 2 ms
    # one wait, before the second attempt; none after it (that was a bug: a last wait for nothing)
    assert [r.getMessage() for r in caplog.records] == [
        "POST /character/list (character list): HTTP 503 (maintenance); retrying in 0.10 s (attempt 2 of at most 2)"]
    assert info.value.status == 503 and info.value.api_message.startswith("maintenance (gave up after 2 attempts")
    assert len(emu.requests) == 2
    s.close()


@pytest.mark.parametrize("header,seconds", [("0", 0.0), ("-0.5", None), ("inf", None), ("-inf", None),
                                            ("nan", None)])
def test_retry_after_in_seconds_at_the_edges(header: str, seconds: float | None) -> None:
    assert _retry_after(httpx.Response(503, headers={"Retry-After": header})) == seconds


def test_retry_after_as_a_date_counts_from_now_and_a_past_one_is_ignored() -> None:
    later = _retry_after(httpx.Response(429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}))
    assert later is not None and 25 < later <= 30
    assert _retry_after(httpx.Response(429, headers={"Retry-After": formatdate(time.time() - 30, usegmt=True)})) is None


# --- before any request ----------------------------------------------------------------------

def test_credentials_in_the_url_are_dropped_and_every_piece_of_them_scrubbed(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # a registry of its own and values never seen before: nothing remembered earlier in this
    # process (mutmut forks one that already ran the tests) may do checked_url's remembering
    monkeypatch.setattr(secrets, "_known", set())
    monkeypatch.setattr(secrets, "_sorted", [])
    tag = uuid.uuid4().hex[:8]
    user, password = f"ci-deployer-{tag}", f"Pa55:w0rd%40{tag}"  # a colon, and an encoded @
    # the query holds another "://x@" that is not the authority
    url = f"http://{user}:{password}@host.example/v1?then=https://anon@elsewhere.example"
    with caplog.at_level("WARNING", logger="convai_sync"):
        assert checked_url(url, API) == "http://host.example/v1?then=https://anon@elsewhere.example"
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring the user name and password in CONVAI_API_URL / --api-url: the API key authenticates"]
    assert scrub(f"user {user}, password {password} ({password.replace('%40', '@')})") == \
        "user (sensitive), password (sensitive) ((sensitive))"
    assert scrub(f"{user}:{password}") == "(sensitive)"


def test_a_url_without_credentials_is_left_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="convai_sync"):
        assert checked_url("https://api.example/v1/", API) == "https://api.example/v1"
    assert caplog.records == []


@pytest.mark.parametrize("key,problem", [
    ("key-0123 456", "whitespace at position 9 of 12"),
    ("key-01\x0123", "a control or non-ASCII character at position 7 of 9"),
    ("key-0123\u00e9", "a control or non-ASCII character at position 9 of 9"),
])
def test_an_account_key_no_header_can_carry_is_refused_saying_where(key: str, problem: str) -> None:
    with pytest.raises(ConvaiSyncError) as info:
        HttpSession(API, "http://127.0.0.1:9", {}, key)
    assert str(info.value) == (f"CONVAI_API_KEY contains {problem}; an API key is printable ASCII only: set "
                               "it again without the stray character (e.g. a trailing newline). Nothing "
                               "was sent.")


def test_every_printable_ascii_character_may_be_in_a_key() -> None:
    key = "".join(chr(c) for c in range(0x21, 0x7f))  # "!" to "~"
    s = HttpSession(API, "http://127.0.0.1:9", {}, key, timeout=2.5)
    assert (s.timeout, s.base_url, s.requests) == (2.5, "http://127.0.0.1:9", 0)
    s.close()


@pytest.mark.parametrize("url", ["ftp://api.example", "api.convai.com", "http://"])
def test_a_url_that_is_not_http_is_refused_quoting_it(url: str) -> None:
    with pytest.raises(ConvaiSyncError) as info:
        checked_url(url, API)
    assert str(info.value) == (f"API URL '{url}' is not an http(s) URL; set CONVAI_API_URL or --api-url "
                               "to e.g. https://api.convai.com")


def test_a_slowly_dripping_reply_is_cut_at_the_calls_deadline(
        make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> None:
    # every byte arrives well within the read timeout, so only the call's deadline,
    # passed down to the transport, can stop it (test_hostile_replies does the same
    # through the CLI at the real 2 s minimum)
    from convai_sync.providers import http
    monkeypatch.setattr(http, "MIN_DEADLINE", 0.3)
    emu = make_emulator()
    emu.override("/character/list", {"characters": [], "pad": "x" * 20}, drip=0.05)  # 2 s in all
    s = session_for(emu)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        s.call("POST", "/character/list", {}, "character list")
    assert time.monotonic() - started < 1.2
    assert str(info.value).startswith("POST /character/list (character list) failed: no response: "
                                      "ReadTimeout: the reply did not arrive in time (it came too slowly)")
    s.close()
