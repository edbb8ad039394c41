"""HttpSession's retry loop and lost-reply check with a scripted API and a fake
clock: the exact waits, attempts and verdicts, in milliseconds of real time.
(test_lost_replies runs the same paths over real HTTP against the emulator.)"""
from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from conftest import FakeClock
from convai_sync.errors import ApiError, ConvaiSyncError
from convai_sync.providers import http
from convai_sync.providers.convai.client import API
from convai_sync.providers.http import HttpSession, checked_url
from convai_sync.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0, max_total=3.5)


@pytest.fixture
def clock(fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The session's and the retry policy's clock (one time module), jitter at its top."""
    monkeypatch.setattr("convai_sync.retry.random.uniform", lambda low, high: high)
    return fake_clock


def session(replies: list[Any], policy: RetryPolicy = POLICY) -> tuple[HttpSession, list[str]]:
    """A session whose transport answers from `replies` in order: an int status with a
    JSON body, a (status, body, headers) tuple, or an exception to raise."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        plain = (reply, {"status": "ok"} if reply < 400 else {"message": "error"}, {}) \
            if isinstance(reply, int) else reply
        status, body, headers = plain
        return httpx.Response(status, json=body, headers=headers)

    s = HttpSession(API, "http://api.test", {}, "acct-key-for-http-tests", retry=policy)
    s._http._transport = httpx.MockTransport(handler)  # the one-method seam under the pool
    return s, sent


def test_transient_failures_are_retried_with_doubling_waits(clock: FakeClock) -> None:
    s, sent = session([503, 502, 500, 200])
    assert s.call("POST", "/x", {}) == {"status": "ok"}
    assert clock.sleeps == [0.5, 1.0, 2.0] and len(sent) == 4 and s.requests == 4


def test_the_time_budget_ends_the_retries_and_the_error_counts_the_attempts(clock: FakeClock) -> None:
    s, sent = session([503])
    with pytest.raises(ApiError, match=r"POST /x \(thing\) failed: HTTP 503: error \(gave up after 4 "
                                       r"attempts in 4s\)\n  the API or the network is failing; run again "
                                       r"later: a re-run picks up where this one stopped$"):
        s.call("POST", "/x", {}, "thing")
    # 0.5 + 1 + 2 = 3.5 = max_total: the third wait fits exactly, a fourth would not
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(sent) == 4


def test_a_budget_exactly_used_up_still_waits_the_last_time(clock: FakeClock) -> None:
    s, sent = session([503, 503, 503, 200])
    assert s.call("POST", "/x", {}) == {"status": "ok"}
    assert clock.sleeps == [0.5, 1.0, 2.0]   # elapsed 1.5 + 2 == 3.5: not over budget


def test_max_attempts_bounds_the_retries(clock: FakeClock) -> None:
    s, sent = session([503], RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001, max_total=60))
    with pytest.raises(ApiError, match=r"gave up after 3 attempts"):
        s.call("POST", "/x", {})
    assert len(sent) == 3


def test_retry_after_sets_the_wait_and_pauses_the_run(clock: FakeClock) -> None:
    s, sent = session([(429, {"message": "slow down"}, {"Retry-After": "0.5"}), 200],
                      RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001, max_total=60))
    assert s.call("POST", "/x", {}) == {"status": "ok"}
    assert clock.sleeps == [0.5]
    assert (s.limit.throttled, s.limit.cuts) == (1, 1)


def test_a_5xx_with_retry_after_is_waited_out_too(clock: FakeClock) -> None:
    s, _ = session([(503, {"message": "maintenance"}, {"Retry-After": "0.5"}), 200])
    s.call("POST", "/x", {})
    assert clock.sleeps == [0.5]


def test_a_4xx_without_a_hint_says_only_what_the_api_said(clock: FakeClock) -> None:
    s, _ = session([(418, {"message": "teapot"}, {})])
    with pytest.raises(ApiError) as err:
        s.call("POST", "/x", {})
    assert str(err.value) == "POST /x failed: HTTP 418: teapot"


def test_a_429_without_retry_after_backs_off_by_the_policy(clock: FakeClock) -> None:
    s, sent = session([(429, {"message": "slow down"}, {}), 200])
    s.call("POST", "/x", {})
    assert clock.sleeps == [0.5]


def test_a_429_that_never_ends_gives_the_rate_limit_hint(clock: FakeClock) -> None:
    s, _ = session([(429, {"message": "API rate limit exceeded."}, {})])
    with pytest.raises(ApiError, match=r"HTTP 429: API rate limit exceeded\. \(gave up.*\n  the API "
                                       r"kept rate-limiting"):
        s.call("POST", "/x", {})


def test_client_errors_fail_at_once_with_the_message_and_hint(clock: FakeClock) -> None:
    s, sent = session([(401, {"message": "Unauthorized"}, {})])
    with pytest.raises(ApiError, match=r"^POST /x \(thing\) failed: HTTP 401: Unauthorized\n  the "
                                       r"account key was refused") as err:
        s.call("POST", "/x", {}, "thing")
    assert err.value.status == 401 and len(sent) == 1 and clock.sleeps == []


def test_an_error_body_without_message_falls_back_to_the_text(clock: FakeClock) -> None:
    s, _ = session([(400, ["odd"], {})])
    with pytest.raises(ApiError, match=r'HTTP 400: \["odd"\]'):
        s.call("POST", "/x", {})


def test_a_reply_that_is_not_json_is_named(clock: FakeClock) -> None:
    s, _ = session([200])
    s._http._transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(ApiError, match=r"^POST /x \(thing\) failed: HTTP 200: the reply is not JSON\n"
                                       r"  is CONVAI_API_URL pointing at the Convai API\?"):
        s.call("POST", "/x", {}, "thing")


@pytest.mark.parametrize("status", [300, 301])
def test_a_3xx_is_not_a_success(clock: FakeClock, status: int) -> None:
    s, _ = session([(status, {"status": "ok"}, {})])
    with pytest.raises(ApiError, match=f"HTTP {status}"):
        s.call("POST", "/x", {})


def test_a_refusal_inside_a_200_names_the_call_and_object(clock: FakeClock) -> None:
    s, _ = session([(200, {"status": "error", "message": "nope"}, {})])
    with pytest.raises(ApiError, match=r"^POST /x \(thing\) failed: HTTP 200: nope \(inside an "
                                       r"HTTP 200 reply\)$"):
        s.call("POST", "/x", {}, "thing")


# --- the lost-reply check -------------------------------------------------------------

class Landed:
    """A `landed` check that answers False `misses` times, then True."""

    def __init__(self, misses: int | None):
        self.misses, self.calls = misses, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.misses is not None and self.calls > self.misses


def test_a_lost_reply_that_landed_is_not_repeated(clock: FakeClock) -> None:
    s, sent = session([500, 200])
    landed = Landed(0)
    assert s.call("POST", "/w", {}, landed=landed) is None
    assert len(sent) == 1 and landed.calls == 1


def test_a_lost_reply_that_did_not_land_is_repeated(clock: FakeClock) -> None:
    s, sent = session([500, 200])
    assert s.call("POST", "/w", {}, landed=Landed(None)) == {"status": "ok"}
    assert len(sent) == 2


def test_a_429_is_never_ambiguous(clock: FakeClock) -> None:
    s, sent = session([(429, {}, {}), 200])
    landed = Landed(0)
    assert s.call("POST", "/w", {}, landed=landed) == {"status": "ok"}
    assert landed.calls == 0


def test_a_timeout_on_a_write_is_ambiguous_but_not_on_a_get(clock: FakeClock) -> None:
    s, _ = session([httpx.ReadTimeout("slow"), 200])
    landed = Landed(0)
    assert s.call("POST", "/w", {}, landed=landed) is None
    s, _ = session([httpx.ReadTimeout("slow"), 200])
    assert s.call("GET", "/r", landed=Landed(0)) == {"status": "ok"}


def test_a_409_after_a_lost_reply_waits_for_reads_to_catch_up(clock: FakeClock) -> None:
    s, sent = session([500, (409, {"message": "already exists"}, {})])
    landed = Landed(3)  # the read before the retry, then two more lagging reads
    assert s.call("POST", "/w", {}, landed=landed) is None
    assert landed.calls == 4
    assert clock.sleeps == [0.5, 0.5, 1.0]  # the retry's wait, then the polling's own


def test_a_409_after_a_lost_reply_that_never_shows_is_an_error(clock: FakeClock) -> None:
    s, sent = session([500, (409, {"message": "already exists"}, {})])
    with pytest.raises(ApiError, match="HTTP 409: already exists"):
        s.call("POST", "/w", {}, landed=Landed(None))
    # polling stops when the next wait would overrun the call's budget (0.875 s)
    assert clock.sleeps == [0.5, 0.5, 1.0]  # elapsed 2, and 2 more would be 4 > 3.5


def test_polling_may_use_the_budget_to_the_last_millisecond(clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0, max_total=4.0)
    s, _ = session([500, (409, {"message": "already exists"}, {})], policy)
    with pytest.raises(ApiError, match="HTTP 409"):
        s.call("POST", "/w", {}, landed=Landed(None))
    assert clock.sleeps == [0.5, 0.5, 1.0, 2.0]  # 2 + 2 == 4.0: still within budget


def test_a_404_after_a_lost_reply_is_checked_too(clock: FakeClock) -> None:
    s, _ = session([502, (404, {"message": "not found"}, {})])
    assert s.call("POST", "/w", {}, landed=Landed(1)) is None


def test_a_409_without_a_lost_reply_is_not_checked(clock: FakeClock) -> None:
    s, _ = session([(409, {"message": "already exists"}, {})])
    landed = Landed(0)
    with pytest.raises(ApiError, match="HTTP 409"):
        s.call("POST", "/w", {}, landed=landed)
    assert landed.calls == 0


def test_other_errors_after_a_lost_reply_are_not_checked(clock: FakeClock) -> None:
    s, _ = session([500, (400, {"message": "bad"}, {})])
    landed = Landed(None)
    with pytest.raises(ApiError, match="HTTP 400: bad"):
        s.call("POST", "/w", {}, landed=landed)
    assert landed.calls == 1  # only the check before the retry


def test_a_refusal_inside_a_200_after_a_lost_reply_is_checked(clock: FakeClock) -> None:
    s, _ = session([500, (200, {"status": "error", "message": "already exists"}, {})])
    assert s.call("POST", "/w", {}, landed=Landed(1)) is None


# --- connection errors, URL and key ----------------------------------------------------

def test_a_connection_refused_before_any_answer_fails_at_once(clock: FakeClock) -> None:
    s, sent = session([httpx.ConnectError("refused"), 200])
    with pytest.raises(ApiError, match=r"^POST /x \(thing\) failed: no response: cannot connect to "
                                       r"http://api\.test: refused\n  check CONVAI_API_URL / --api-url"):
        s.call("POST", "/x", {}, "thing")
    assert len(sent) == 1


def test_a_connection_that_keeps_failing_after_an_answer_gives_up_saying_so(clock: FakeClock) -> None:
    s, _ = session([200, httpx.ConnectError("refused")])
    s.call("POST", "/x", {})
    with pytest.raises(ApiError, match=r"no response: connection failed: refused \(gave up after"):
        s.call("POST", "/x", {})


def test_a_read_that_keeps_timing_out_gives_up_naming_the_timeout(clock: FakeClock) -> None:
    s, _ = session([httpx.ReadTimeout("too slow")])
    with pytest.raises(ApiError, match=r"GET /r failed: no response: ReadTimeout: too slow \(gave up"):
        s.call("GET", "/r")


def test_a_lost_reply_stays_possible_across_later_unambiguous_failures(clock: FakeClock) -> None:
    s, _ = session([500, (429, {}, {}), (409, {"message": "already exists"}, {})])
    landed = Landed(2)  # not yet after the 500, nor after the 429; shows after the 409
    assert s.call("POST", "/w", {}, landed=landed) is None
    assert landed.calls == 3


def test_query_parameters_are_sent(clock: FakeClock) -> None:
    s, sent = session([200])
    seen: list[str] = []
    s._http._transport = httpx.MockTransport(
        lambda r: seen.append(str(r.url)) or httpx.Response(200, json={}))
    s.call("GET", "/list", params={"limit": "100"})
    assert seen == ["http://api.test/list?limit=100"]


def test_session_defaults_and_the_account_key_is_never_printed() -> None:
    key = f"acct-key-{uuid.uuid4()}"  # never seen before in this process (mutmut forks one)
    s = HttpSession(API, "http://api.test", {}, key)
    assert s.limit.maximum == 8 and s.retry == RetryPolicy()
    assert s._http.timeout == 30.0
    assert HttpSession(API, "http://api.test", {}, "k-1234", timeout=2.5)._http.timeout == 2.5
    from convai_sync.secrets import scrub
    assert scrub(f"key {key}") == "key (sensitive)"


def test_a_bad_url_is_refused_naming_the_platform_variable() -> None:
    with pytest.raises(ConvaiSyncError, match="set CONVAI_API_URL or --api-url"):
        HttpSession(API, "api.test", {}, "k-1234")


def test_a_connection_refused_after_an_answer_is_retried_and_not_ambiguous(clock: FakeClock) -> None:
    s, sent = session([200, httpx.ConnectError("refused"), 200])
    s.call("POST", "/x", {})
    landed = Landed(0)
    assert s.call("POST", "/w", {}, landed=landed) == {"status": "ok"}
    assert landed.calls == 0 and len(sent) == 3


@pytest.mark.parametrize("url", ["api.convai.com", "ftp://api.convai.com", "http://", "http://[::1"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConvaiSyncError, match=r"is not an http\(s\) URL; set CONVAI_API_URL or "
                                              r"--api-url to e\.g\. https://api\.convai\.com"):
        checked_url(url, API)


def test_a_url_loses_its_trailing_slash() -> None:
    assert checked_url("https://api.convai.com/", API) == "https://api.convai.com"
    assert checked_url("http://127.0.0.1:8787", API) == "http://127.0.0.1:8787"
    assert checked_url("http://127.0.0.1:8787/X", API) == "http://127.0.0.1:8787/X"


def test_no_account_key_is_refused_before_any_request() -> None:
    with pytest.raises(ConvaiSyncError, match="no account key: set CONVAI_API_KEY to your Convai API key"):
        HttpSession(API, "http://api.test", {}, "")


# --- what -v shows while it retries, and the clients' shared base --------------------------

def test_each_retry_is_one_log_line_at_v(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    s, _ = session([503, httpx.ReadTimeout("slow"), 200])
    with caplog.at_level("INFO", logger="convai_sync"):
        s.call("POST", "/x", {}, "thing")
        s2, _ = session([502, 200])
        s2.call("POST", "/y", {})
    assert [r.getMessage() for r in caplog.records] == [
        # the attempt about to be made
        "POST /x (thing): HTTP 503 (error); retrying in 0.50 s (attempt 2 of at most 5)",
        "POST /x (thing): no reply (ReadTimeout: slow); retrying in 1.00 s (attempt 3 of at most 5)",
        "POST /y: HTTP 502 (error); retrying in 0.50 s (attempt 2 of at most 5)"]


def test_an_error_body_that_is_not_json_is_quoted_up_to_200_characters(clock: FakeClock) -> None:
    s, _ = session([200])
    s._http._transport = httpx.MockTransport(lambda r: httpx.Response(400, text="x" * 300))
    with pytest.raises(ApiError) as err:
        s.call("POST", "/x", {})
    assert str(err.value) == "POST /x failed: HTTP 400: " + "x" * 200


def test_every_client_shares_one_configured_session() -> None:
    from convai_sync.providers.http import SessionClient
    client = SessionClient(API, "http://api.test/", {}, "k-12345", parallelism=3,
                           retry=POLICY, timeout=2.5)
    assert (client.base_url, client.limit.maximum, client.http.retry) == ("http://api.test", 3, POLICY)
    assert client.http._http.timeout == 2.5
    assert client.limit is client.http.limit and client.requests == 0
    default = SessionClient(API, "http://api.test", {}, "k-12345")
    assert (default.limit.maximum, default.http.retry) == (8, RetryPolicy())
    assert default.http._http.timeout == 30.0
    with default as same:
        assert same is default


def test_every_transport_shares_one_tls_context_built_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Loading the CA bundle cost ~25 ms of CPU per client; it is built once per
    process, but still from SSL_CERT_FILE when that is set, as httpx would."""
    import certifi
    from convai_sync.providers.transport import JsonTransport, SharedPool, tls_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    shared = SharedPool(2)
    built = [JsonTransport("http://127.0.0.1:9", {}, timeout=1, pool_size=2),
             JsonTransport("https://example.com", {}, timeout=1, pool_size=2,
                           shared=shared)]
    contexts = {id(t._transport._pool._ssl_context) for t in built}
    assert contexts == {id(tls_context())}
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert tls_context() is not built[0]._transport._pool._ssl_context
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError):  # the file is read, not ignored
        tls_context()
    for t in built:
        t.close()
    shared.close()
