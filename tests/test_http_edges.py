"""The shared HTTP session's rarer exits, over real HTTP against the Convai
emulator: a run-wide pause longer than the call may wait, a reply too large to
hold, a request the HTTP library refuses to send, a 5xx that says when to come
back, and Retry-After values at their edges. Each names the call and says what
to do; none waits longer than it must."""
from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Callable

import httpx
import pytest

from conftest import ACCOUNT_KEY
from convai_sync.emulator import Emulator
from convai_sync.errors import ApiError
from convai_sync.providers import transport
from convai_sync.providers.convai.client import API
from convai_sync.providers.http import HttpSession, _retry_after
from convai_sync.retry import RetryPolicy

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
