"""The shared HTTP session against an emulator that disagrees with the client:
Retry-After present or not, reads that lag behind writes (so a retried write
meets 409/404 for its own lost success), refusals inside a 200 body, and an API
that quotes the request (key included) in its errors."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import ACCOUNT_KEY, EXAMPLE, Result, assert_no_secret
from convai_sync.emulator import Emulator, Faults, Quirks
from convai_sync.emulator.base import Reply, Request
from convai_sync.errors import ApiError
from convai_sync.executor import execute
from convai_sync.manifest import load_manifest, resolve_secrets
from convai_sync.planner import build_plan
from convai_sync.providers.convai import ConvaiClient
from convai_sync.providers.http import _retry_after
from convai_sync.retry import RetryPolicy
from convai_sync.secrets import Secret

FAST = RetryPolicy(max_attempts=8, base_delay=0.002, max_delay=0.02, max_total=10)
MODEL = {"model_name": "gpt-4o-mini", "base_url": "https://llm.example/v1", "display_name": "Lagged"}


def client_for(emu: Emulator, **kw: object) -> ConvaiClient:
    client = ConvaiClient(emu.url, ACCOUNT_KEY, retry=kw.pop("retry", FAST), **kw)
    client.detect_dialect("llm-models")
    return client


# --- Retry-After ----------------------------------------------------------------------

def _second_request_seconds(emu: Emulator) -> float:
    """Two concurrent reads against max_inflight=1: the second meets a 429."""
    with client_for(emu) as client:
        first = threading.Thread(target=client.list_characters)
        first.start()
        time.sleep(0.02)
        started = time.monotonic()
        client.list_characters()
        elapsed = time.monotonic() - started
        first.join()
        assert client.limit.throttled >= 1
    return elapsed


def test_a_429_with_retry_after_is_waited_out(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults=Faults(max_inflight=1, latency_ms=60, retry_after=0.4))
    assert _second_request_seconds(emu) >= 0.38
    throttled = [r for r in emu.requests if r.status == 429]
    assert throttled and all(r.fault == "rate-limit" for r in throttled)


def test_a_429_without_retry_after_backs_off_on_its_own(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults=Faults(max_inflight=1, latency_ms=60, retry_after=0.4),
                        quirks=Quirks(retry_after=False))
    assert _second_request_seconds(emu) < 0.3  # the 0.4 s the header would say is never heard


@pytest.mark.parametrize("header,seconds", [("2", 2.0), ("0.05", 0.05), ("soon", None), (None, None)])
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert _retry_after(httpx.Response(429, headers=headers)) == seconds


def test_retry_after_pauses_the_whole_run(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults=Faults(max_inflight=1, latency_ms=60, retry_after=0.4))
    with client_for(emu) as client:
        first = threading.Thread(target=client.list_characters)
        first.start()
        time.sleep(0.02)
        client.list_characters()
        first.join()
        assert client.limit._resume_at > 0  # the pause is shared, not one thread's sleep


def test_a_rate_limited_run_cuts_its_concurrency(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults=Faults(max_inflight=2, latency_ms=20))
    with client_for(emu, parallelism=8) as client:
        threads = [threading.Thread(target=client.list_characters) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.limit.cuts >= 1 and client.limit.limit < 8


# --- lost replies under read-after-write lag ---------------------------------------------

@pytest.fixture
def lagged(make_emulator: Callable[..., Emulator]) -> Emulator:
    """Every committed write loses its reply, and reads show it only 0.3 s later."""
    return make_emulator(seed={"models": [], "characters": []},
                         faults=Faults(after_commit=1.0, seed=5), quirks=Quirks(read_lag=0.3))


def test_a_lost_register_confirmed_through_its_409_once_reads_catch_up(lagged: Emulator) -> None:
    with client_for(lagged) as client:
        client.register_model("lagged", MODEL, Secret("sk-lagged-key-001", "K"))
    paths = [(r.path, r.status, r.committed) for r in lagged.requests if r.path.endswith("register")]
    assert paths[0][2] and [p[1] for p in paths[1:]] and all(p[1] == 409 for p in paths[1:])
    assert len(lagged.writes()) == 1
    assert lagged.models()["lagged"]["model_name"] == "gpt-4o-mini"


def test_a_lost_deregister_confirmed_through_its_404(lagged: Emulator) -> None:
    lagged.faults = Faults()
    with client_for(lagged) as client:
        client.register_model("doomed", MODEL, Secret("sk-lagged-key-002", "K"))
        time.sleep(0.35)
        lagged.faults = Faults(after_commit=1.0, seed=6)
        client.deregister_model("doomed")
    assert any(r.path.endswith("deregister") and r.status == 404 for r in lagged.requests)
    assert "doomed" not in lagged.models()


def test_without_a_lost_reply_a_409_is_an_error_not_a_success(lagged: Emulator) -> None:
    lagged.faults = Faults()
    with client_for(lagged) as client:
        client.register_model("taken", MODEL, Secret("sk-lagged-key-003", "K"))
        with pytest.raises(ApiError, match="HTTP 409: model_group_name already exists"):
            client.register_model("taken", MODEL, Secret("sk-lagged-key-003", "K"))


def test_a_lost_reply_without_lag_is_confirmed_by_one_read_and_never_repeated(
        make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(seed={"models": [], "characters": []}, faults=Faults(after_commit=1.0, seed=1))
    with client_for(emu) as client:
        client.register_model("once", MODEL, Secret("sk-lagged-key-004", "K"))
    assert [r.path for r in emu.requests if r.path.endswith("register")] == ["/llm-models/register"]


def test_a_whole_apply_with_every_reply_lost_under_lag_converges_in_one_run(
        make_emulator: Callable[..., Emulator], env: dict[str, str]) -> None:
    emu = make_emulator(quirks=Quirks(read_lag=0.15))
    loaded = load_manifest(EXAMPLE)
    # 20 attempts: an idempotent update whose replies keep getting lost is simply repeated
    client = ConvaiClient(emu.url, ACCOUNT_KEY, retry=RetryPolicy(20, 0.002, 0.02, 10))
    plan = build_plan(loaded, client.read_state())
    emu.faults = Faults(after_commit=0.5, seed=2)
    report = execute(plan, client, resolve_secrets(loaded).keys)
    assert report.ok, report.to_json()
    # registers and deregisters are not idempotent: each landed once, however often retried
    once = [r for r in emu.writes() if r.path.endswith(("/register", "/deregister"))]
    summary = plan.summary()
    assert len(once) == summary["register"] + summary["deregister"] + 2 * summary["replace"]
    emu.faults = Faults()
    time.sleep(0.2)
    assert build_plan(loaded, client.read_state()).empty
    assert emu.orphan_events == []


# --- key rotation really sends the key ------------------------------------------------

def test_a_key_rotation_sends_the_new_key(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(seed={"models": [{**MODEL, "model_group_name": "rot", "api_key": "sk-old-0001"}],
                              "characters": []})
    with client_for(emu) as client:
        client.update_model("rot", {}, Secret("sk-new-0002", "K"))
    assert emu.models()["rot"]["api_key"] == "sk-new-0002"


# --- refusals inside a 200 body --------------------------------------------------------

def test_a_refusal_inside_a_200_body_is_an_error(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(quirks=Quirks(errors_in_200=True))
    with client_for(emu) as client:
        with pytest.raises(ApiError, match=r"HTTP 200: Could not fetch character details for "
                                            r"nobody \(inside an HTTP 200 reply\)"):
            client.update_character("nobody", {"temperature": 0.5})
        with pytest.raises(ApiError, match=r"Model 'ghost' not found \(inside an HTTP 200 reply\)"):
            client.update_model("ghost", {"base_url": "https://x.example/v1"})


def test_a_lost_register_whose_retry_is_refused_inside_a_200_is_confirmed(
        make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(seed={"models": [], "characters": []}, faults=Faults(after_commit=1.0, seed=5),
                        quirks=Quirks(errors_in_200=True, read_lag=0.2))
    with client_for(emu) as client:
        client.register_model("quiet", MODEL, Secret("sk-lagged-key-005", "K"))
    assert len(emu.writes()) == 1


# --- an API that quotes the request in its errors ------------------------------------------

class QuotingEmulator(Emulator):
    """Refuses every write and quotes the request body (api_key included) in the error,
    as some APIs do: only the client's scrubber stands between that and the output."""

    def handle(self, request: Request) -> Reply:
        if request.path.endswith(("register", "update")) and isinstance(request.body, dict):
            return Reply(400, {"status": "error", "message": f"bad request {json.dumps(request.body)}"})
        return super().handle(request)


@pytest.fixture
def quoting() -> Emulator:
    from convai_sync.emulator import demo_seed
    emu = QuotingEmulator(account_key=ACCOUNT_KEY, seed=demo_seed())
    emu.start()
    yield emu
    emu.stop()


def test_a_key_quoted_back_by_the_api_is_scrubbed_from_output_and_report(
        quoting: Emulator, run: Callable[..., Result], env: dict[str, str], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = run("apply", "-f", str(EXAMPLE), "--api-url", quoting.url, "--auto-approve", "-vv",
                 "--report-file", str(report), "--state-file", str(tmp_path / "s.json"))
    assert result.code == 1
    assert "bad request" in result.output and "(sensitive)" in result.output
    assert_no_secret(result.output, report.read_text())


def test_a_key_quoted_back_in_a_read_error_is_scrubbed(
        quoting: Emulator, run: Callable[..., Result], env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the wrong account key comes back in the 401's quote of the header
    monkeypatch.setenv("CONVAI_API_KEY", "wrong-account-key-7781")
    quoting.account_key = "other"
    original = quoting.handle
    quoting.handle = lambda request: Reply(401, {"message": "key " + request.headers.get(  # type: ignore[method-assign]
        "CONVAI-API-KEY", "") + " refused"}) if request.path.endswith("list") else original(request)
    result = run("plan", "-f", str(EXAMPLE), "--api-url", quoting.url)
    assert result.code == 1
    assert "key (sensitive) refused" in result.output
    assert "wrong-account-key-7781" not in result.output
