"""Findings 5 and 6 of issue 11: hostile or broken API replies. Each is served by the
emulator's override hook; each must end in a clear error naming the call, in bounded
time, with nothing written."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Callable

import pytest

from conftest import EXAMPLE, EXAMPLES, Result, cli_env
from convai_sync.emulator import Emulator
from convai_sync.providers import transport


def cli_process(*args: str, limit: float = 40) -> tuple[int, str, float]:
    """Run convai-sync in its own process (a hang must not hang the test run)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "convai_sync", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=cli_env(NO_COLOR="1"))
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"still running after {limit}s: {out[-2000:]}")
    return proc.returncode, out, time.monotonic() - started


@pytest.mark.long
@pytest.mark.parametrize("retry_after", ["100000", "nan"])
def test_an_absurd_retry_after_cannot_outlast_the_deadline(
        make_emulator: Callable[..., Emulator], retry_after: str, tmp_path: Any) -> None:
    emu = make_emulator()
    emu.override("/character/update", {"status": "error", "message": "slow down"}, status=429,
                 headers={"Retry-After": retry_after})
    code, out, took = cli_process("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve",
                                  "--retry-max-time", "2", "--parallelism", "4",
                                  "--state-file", str(tmp_path / "s.json"))
    assert code == 1 and took < 25, out
    assert "POST /character/update" in out and "gave up" in out, out
    assert "internal error" not in out and "Traceback" not in out


@pytest.mark.parametrize("header,seconds", [("2.5", 2.5), ("nan", None), ("inf", None), ("-5", None),
                                            ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)])
def test_retry_after_is_read_in_seconds_and_absurd_values_are_ignored(header: str,
                                                                     seconds: float | None) -> None:
    import httpx
    from convai_sync.providers.http import _retry_after
    assert _retry_after(httpx.Response(429, headers={"Retry-After": header})) == seconds


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    import httpx
    from email.utils import formatdate
    from convai_sync.providers.http import _retry_after
    later = _retry_after(httpx.Response(429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}))
    assert later is not None and 25 < later <= 30


@pytest.mark.long
def test_a_dripping_reply_cannot_outlast_the_deadline(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    emu.override("/llm-models/list", {"models": [], "pad": "x" * 40}, drip=0.5)  # 30 s in all
    code, out, took = cli_process("plan", "-f", str(EXAMPLE), "--api-url", emu.url,
                                  "--retry-max-time", "2")
    assert code == 1 and took < 12, (took, out)
    assert "POST /llm-models/list" in out and "ReadTimeout" in out, out


def test_a_huge_reply_is_refused_not_held(run: Callable[..., Result], make_emulator: Callable[..., Emulator],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_REPLY_BYTES", 1024 * 1024)
    emu = make_emulator()
    emu.override("/character/list", raw=b"[" + b" " * 65535, repeat=32)  # 2 MiB
    result = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert result.code == 1, result.output
    assert "POST /character/list" in result.stderr and "larger than 1 MiB" in result.stderr
    assert emu.writes() == []


# -- the hostile-reply corpus: the live state is refused before any write -----------------

def live_reply(emu: Emulator, path: str) -> Any:
    import httpx
    from conftest import ACCOUNT_KEY
    return httpx.post(emu.url + path, headers={"CONVAI-API-KEY": ACCOUNT_KEY}, json={}, verify=False).json()


def characters(reply: Any) -> list[dict]:
    return reply["characters"] if isinstance(reply, dict) else reply


CORPUS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "null character id": ("/character/list",
                          lambda r: {"characters": [{**characters(r)[0], "character_id": None},
                                                    *characters(r)[1:]]}, "item 0 has no character_id"),
    "error envelope with 200": ("/character/list", lambda r: {"status": "error", "characters": []},
                                "the reply says the call failed (status 'error'"),
    "next_page": ("/character/list", lambda r: {"characters": characters(r), "next_page": 2},
                  "carries 'next_page'"),
    "total larger than the list": ("/character/list",
                                   lambda r: {"characters": characters(r)[:3], "total": 7},
                                   "'total': 7, but lists 3"),
    "duplicate character": ("/character/list",
                            lambda r: {"characters": characters(r) + characters(r)[:1]},
                            "the list is ambiguous"),
    "non-string character name": ("/character/list",
                                  lambda r: {"characters": [{**characters(r)[0], "character_name": 7}]},
                                  "character_name that is not text"),
    "duplicate model": ("/llm-models/list", lambda r: {"models": r["models"] + r["models"][1:2]},
                        "the list is ambiguous"),
    "null model name": ("/llm-models/list",
                        lambda r: {"models": [{**r["models"][0], "model_group_name": None}, *r["models"][1:]]},
                        "item 0 has no model_group_name"),
    "non-string model name": ("/llm-models/list",
                              lambda r: {"models": [{**r["models"][0], "model_group_name": 12}]},
                              "item 0 has no model_group_name string (got 12)"),
    "has_more": ("/llm-models/list", lambda r: {**r, "has_more": True}, "carries 'has_more'"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_a_hostile_reply_is_refused_naming_the_call_with_nothing_written(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], case: str,
        tmp_path: Any) -> None:
    path, make, expected = CORPUS[case]
    emu = make_emulator()
    emu.override(path, make(live_reply(emu, path)))
    result = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve",
                 "--state-file", str(tmp_path / "s.json"))
    assert result.code == 1, result.output
    assert f"POST {path}" in result.stderr and expected in result.stderr, result.stderr
    assert "nothing was written" in result.stderr and "internal error" not in result.stderr
    assert emu.writes() == []


def test_langbot_and_vapi_refuse_ambiguous_and_paged_lists(
        run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from convai_sync.providers.langbot.emulator import LangBotEmulator
    from convai_sync.providers.vapi.emulator import VapiEmulator, vapi_demo_seed
    monkeypatch.setenv("VAPI_API_KEY", "vapi-key-0123")
    with VapiEmulator(api_key="vapi-key-0123", seed=vapi_demo_seed()) as vapi:
        import httpx
        listed = httpx.get(vapi.url + "/assistant", headers={"Authorization": "Bearer vapi-key-0123"}, verify=False).json()
        vapi.override("/assistant", [{**listed[0], "id": None}, *listed[1:]])
        result = run("apply", "-f", str(EXAMPLES / "vapi.yaml"), "--api-url", vapi.url, "--auto-approve",
                     "--state-file", str(tmp_path / "v.json"))
        assert result.code == 1 and "GET /assistant" in result.stderr and "item 0 has no id" in result.stderr
        assert vapi.writes() == []
    monkeypatch.setenv("LANGBOT_API_KEY", "lb-key-0123")
    with LangBotEmulator(api_key="lb-key-0123", seed={"models": [], "pipelines": []}) as lb:
        twice = [{"uuid": "p-1", "name": "Mara", "config": {}}, {"uuid": "p-1", "name": "Mara", "config": {}}]
        for body, expected in [({"code": 0, "msg": "ok", "data": {"pipelines": twice}}, "ambiguous"),
                               ({"code": 0, "msg": "ok", "data": {"pipelines": [], "total": 3}},
                                "'total': 3, but lists 0")]:
            lb.override("/api/v1/pipelines", body)
            result = run("apply", "-f", str(EXAMPLES / "langbot.yaml"), "--api-url", lb.url, "--auto-approve",
                         "--state-file", str(tmp_path / "l.json"))
            assert result.code == 1 and "GET /api/v1/pipelines" in result.stderr, result.stderr
            assert expected in result.stderr and lb.writes() == []
