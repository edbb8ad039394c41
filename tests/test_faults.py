"""Transient faults, lost replies and partial applies, against the emulator's
fault injection over real HTTP."""
from __future__ import annotations

import json
import socket
import threading
from typing import Callable

import re

import pytest

from conftest import ACCOUNT_KEY, EXAMPLE, Result, assert_no_secret
from convai_sync.emulator import Emulator, Faults, demo_seed
from convai_sync.errors import ApiError
from convai_sync.executor import DONE, FAILED, NOT_ATTEMPTED, execute
from convai_sync.manifest import load_manifest, resolve_secrets
from convai_sync.planner import build_plan
from convai_sync.providers.convai import ConvaiClient
from convai_sync.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=8, base_delay=0.002, max_delay=0.02, max_total=10)


def plan_and_client(emu: Emulator, retry: RetryPolicy = FAST):
    loaded = load_manifest(EXAMPLE)
    client = ConvaiClient(emu.url, ACCOUNT_KEY, retry=retry)
    plan = build_plan(loaded, client.read_state())
    return loaded, client, plan


def converged(emu: Emulator) -> bool:
    loaded = load_manifest(EXAMPLE)
    with ConvaiClient(emu.url, ACCOUNT_KEY, retry=FAST) as client:
        return build_plan(loaded, client.read_state()).empty


def test_every_reply_lost_after_commit_is_confirmed_from_live_state_not_repeated(
        make_emulator: Callable[..., Emulator], env: dict[str, str]) -> None:
    emu = make_emulator()
    loaded, client, plan = plan_and_client(emu)
    emu.faults = Faults(after_commit=1.0, seed=1)
    report = execute(plan, client, resolve_secrets(loaded).keys)
    assert report.ok, report.to_json()
    # each change landed exactly once (a replace is two writes); none was repeated
    writes = [r for r in emu.requests if r.committed]
    assert len(writes) == len(plan.changes) + plan.summary()["replace"]
    assert all(r.fault and r.fault.startswith("after") for r in writes)
    emu.faults = Faults()
    assert converged(emu)
    assert emu.orphan_events == []


def test_transient_faults_before_commit_are_retried_until_success(
        make_emulator: Callable[..., Emulator], env: dict[str, str]) -> None:
    emu = make_emulator(faults=Faults(rate=0.5, seed=3))
    loaded, client, plan = plan_and_client(emu)
    report = execute(plan, client, resolve_secrets(loaded).keys)
    assert report.ok, report.to_json()
    assert any(r.fault and r.fault.startswith("before") for r in emu.requests)
    emu.faults = Faults()
    assert converged(emu)
    assert emu.orphan_events == []


@pytest.mark.parametrize("body,status", [
    ({"charID": "no-such-character", "temperature": 0.5}, 400),
])
def test_client_errors_are_not_retried_and_name_the_call_and_object(
        make_emulator: Callable[..., Emulator], body: dict, status: int) -> None:
    emu = make_emulator()
    with ConvaiClient(emu.url, ACCOUNT_KEY, retry=FAST) as client:
        with pytest.raises(ApiError) as err:
            client.update_character(body["charID"], {"temperature": 0.5})
    assert err.value.status == status
    assert str(err.value).startswith("POST /character/update (character 'no-such-character') failed: HTTP 400")
    assert len(emu.requests) == 1


def test_duplicate_register_is_a_409_naming_the_model(make_emulator: Callable[..., Emulator],
                                                      env: dict[str, str]) -> None:
    emu = make_emulator()
    loaded, client, _ = plan_and_client(emu)
    key = resolve_secrets(loaded).keys["studio-turbo"][0]
    emu.clear_log()
    with pytest.raises(ApiError, match=r"/llm-models/register \(model 'studio-turbo'\) failed: HTTP 409"):
        client.register_model("studio-turbo", {"model_name": "x"}, key)
    assert len(emu.requests) == 1


def test_a_phase_that_gives_up_stops_the_run_and_reports_every_change(
        make_emulator: Callable[..., Emulator], env: dict[str, str]) -> None:
    emu = make_emulator()
    loaded, client, plan = plan_and_client(emu, RetryPolicy(max_attempts=3, base_delay=0.001))
    emu.faults = Faults(rate=1.0, seed=5)
    report = execute(plan, client, resolve_secrets(loaded).keys)
    doc = report.to_json()
    assert not report.ok
    assert [c["status"] for c in doc["changes"] if c["phase"] == "register"] == [FAILED]
    assert all(c["status"] == NOT_ATTEMPTED for c in doc["changes"] if c["phase"] != "register")
    assert "gave up after 3 attempts" in doc["changes"][0]["error"]
    assert emu.writes() == []
    emu.faults = Faults()
    _, client, plan = plan_and_client(emu)
    assert execute(plan, client, resolve_secrets(loaded).keys).ok
    assert converged(emu)
    assert emu.orphan_events == []


def test_unreadable_account_fails_before_any_write(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path) -> None:
    emu = make_emulator(faults=Faults(rate=1.0, seed=9))
    out = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve",
              "--retry-max-time", "0.3", "--report-file", str(tmp_path / "r.json"))
    # the very first read fails: nothing is planned, nothing written, a clear error
    assert out.code == 1
    assert "POST /llm-models/list (model list) failed" in out.stderr and "gave up" in out.stderr
    assert emu.writes() == []


@pytest.mark.parametrize("url", ["notaurl", "ftp://api.convai.com", "http://"])
def test_an_api_url_that_is_not_http_is_refused_before_any_request(
        run: Callable[..., Result], url: str) -> None:
    out = run("plan", "-f", str(EXAMPLE), "--api-url", url)
    assert out.code == 1
    assert out.stderr == (f"Error: API URL {url!r} is not an http(s) URL; set CONVAI_API_URL or "
                          "--api-url to e.g. https://api.convai.com\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_api_never_reached_fails_at_once_naming_the_url(run: Callable[..., Result]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = run("plan", "-f", str(EXAMPLE), "--api-url", url, "--retry-max-time", "30")
    assert out.code == 1
    assert f"cannot connect to {url}" in out.stderr and "check CONVAI_API_URL" in out.stderr
    assert "gave up" not in out.stderr  # a wrong URL is not waited on for 30 s


def test_a_refused_connection_after_the_api_answered_is_retried(env: dict[str, str]) -> None:
    port = free_port()
    emu = Emulator(account_key=ACCOUNT_KEY, seed=demo_seed())
    emu.start(port=port)
    patient = RetryPolicy(max_attempts=30, base_delay=0.05, max_delay=0.2, max_total=10)
    client = ConvaiClient(emu.url, ACCOUNT_KEY, retry=patient)
    before = client.read_state()
    emu.stop()  # the API restarts: refused for a moment, then back on the same port
    again = Emulator(account_key=ACCOUNT_KEY, seed=demo_seed())
    threading.Timer(0.3, again.start, kwargs={"port": port}).start()
    try:
        after = client.read_state()
        assert (after.models, after.consumers) == (before.models, before.consumers)
        assert len(again.requests) >= 1
    finally:
        client.close()
        again.stop()


def test_faulty_apply_converges_within_three_runs_over_the_cli(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path) -> None:
    emu = make_emulator(faults=Faults(rate=0.3, after_commit=0.3, seed=11))
    outputs = []
    for attempt in range(3):
        out = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve",
                  "--report-file", str(tmp_path / f"report{attempt}.json"))
        outputs.append(out.output)
        if out.code == 0:
            break
    assert out.code == 0, "\n".join(outputs)
    report = json.loads((tmp_path / f"report{attempt}.json").read_text())
    assert all(c["status"] == DONE for c in report["changes"])
    emu.faults = Faults()
    assert converged(emu)
    assert emu.orphan_events == []
    assert_no_secret(*outputs, *(p.read_text() for p in tmp_path.glob("*.json")))


def test_retry_policy_honours_retry_after_and_backs_off_exponentially() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=5, max_total=60)
    assert policy.delay(0, 2.5) == 2.5
    assert all(0 <= policy.delay(3, None) <= 0.8 for _ in range(100))
    assert max(policy.delay(20, None) for _ in range(200)) <= 5


def test_each_retry_is_logged_at_v_with_the_call_status_and_wait(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    emu = make_emulator(faults=Faults(rate=1.0, seed=9))
    quiet = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--retry-max-time", "0.3")
    assert "retrying in" not in quiet.stderr  # not without -v
    out = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--retry-max-time", "0.3", "-v")
    retries = [line for line in out.stderr.splitlines() if "retrying in" in line]
    assert retries, out.stderr
    assert re.search(r"^INFO convai_sync: POST /llm-models/list \(model list\): HTTP \d{3} \(.*\); "
                     r"retrying in \d+\.\d\d s \(attempt 2 of at most 8\)$", retries[0]), retries[0]
    assert "httpx" not in out.stderr  # -v is not the raw HTTP log


def test_retry_max_time_help_names_the_attempt_cap(run: Callable[..., Result]) -> None:
    out = run("plan", "--help")
    assert "or after 8 attempts, whichever comes first" in " ".join(out.stdout.split())
