"""The Convai emulator where it disagrees with the client's beliefs, as the contract
(CONVAI_API.md) allows: its own built-in table, other display names for unnamed
models, lean reads, no Retry-After, read lag, refusals inside a 200 body; and the
`convai-sync emulator` flags that switch them on."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import EXAMPLE, Result
from convai_sync.emulator import Emulator, Quirks
from convai_sync.providers.convai.builtins import builtin_models
from convai_sync.providers.convai.emulator.quirks import emulator_builtins


def test_the_emulator_keeps_its_own_built_in_table() -> None:
    ours, theirs = builtin_models(), set(emulator_builtins())
    assert "llama-3-70B" in ours and "llama-3-70B" not in theirs  # renamed upstream
    assert {"gpt-4o", "gpt-4o-mini", "claude-haiku", "llama3-70b"} <= theirs
    assert emulator_builtins()["gpt-4o"] == "GPT 4O"  # display names of its own, too


def test_a_code_the_client_knows_but_the_api_dropped_fails_naming_the_character(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    manifest = tmp_path / "models.yaml"
    manifest.write_text(EXAMPLE.read_text().replace("model_group_name: gpt-4o\n",
                                                    "model_group_name: llama-3-70B\n"))
    assert "llama-3-70B" in manifest.read_text()
    result = run("apply", "-f", str(manifest), "--api-url", emu.url, "--auto-approve")
    assert result.code == 1
    assert re.search(r"POST /character/update \(character '[^']+'\) failed: HTTP 400: "
                     r"Model 'llama-3-70B' is not available", result.output), result.output
    assert "Traceback" not in result.output
    assert emu.orphan_events == []


@pytest.mark.parametrize("unnamed", ["code", "model", "blank"])
def test_unnamed_models_converge_whatever_display_name_the_api_gives_them(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        unnamed: str) -> None:
    emu = make_emulator(seed={"models": [], "characters": []}, quirks=Quirks(unnamed_display=unnamed))
    manifest = tmp_path / "models.yaml"
    text = "\n".join(line for line in EXAMPLE.read_text().splitlines()
                     if not line.strip().startswith("display_name:"))
    manifest.write_text(text.split("characters:")[0] + "characters: []\n")
    args = ("-f", str(manifest), "--api-url", emu.url)
    assert run("apply", *args, "--auto-approve").code == 0
    displays = {m["display_name"] for m in emu.models().values()}
    expected = {"code": set(emu.models()), "model": {m["model_name"] for m in emu.models().values()},
                "blank": {""}}[unnamed]
    assert displays == expected
    assert run("plan", *args, "--detailed-exitcode").code == 0


def test_quirks_are_checked() -> None:
    with pytest.raises(ValueError, match="unnamed_display must be one of"):
        Quirks(unnamed_display="nickname")
    with pytest.raises(ValueError, match="read_lag must not be negative"):
        Quirks(read_lag=-1)


def test_a_lagging_list_shows_a_write_only_after_the_lag(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(seed={"models": [], "characters": []}, quirks=Quirks(read_lag=0.3))
    headers = {"CONVAI-API-KEY": emu.account_key}
    body = {"model_group_name": "fresh", "model_name": "m", "api_key": "sk-fresh-0001",
            "is_uncensored": False}
    assert httpx.post(emu.url + "/llm-models/register", json=body, headers=headers, verify=False).status_code == 200
    listed = lambda: httpx.post(emu.url + "/llm-models/list", headers=headers, verify=False).json()["count"]  # noqa: E731
    assert listed() == 0
    assert httpx.post(emu.url + "/llm-models/register", json=body, headers=headers, verify=False).status_code == 409
    time.sleep(0.35)
    assert listed() == 1


def test_characters_added_through_the_emulator_route_show_after_the_lag_too(
        make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(seed={"models": [], "characters": []}, quirks=Quirks(read_lag=0.2))
    headers = {"CONVAI-API-KEY": emu.account_key}
    added = {"characters": [{"character_id": "c1", "character_name": "Mara",
                             "model_group_name": "gpt-4o", "temperature": 0.5}]}
    assert httpx.post(emu.url + "/_emulator/characters", json=added, headers=headers, verify=False).status_code == 200
    listed = lambda: httpx.post(emu.url + "/character/list", headers=headers, verify=False).json()["characters"]  # noqa: E731
    assert listed() == []
    time.sleep(0.25)
    assert [c["character_id"] for c in listed()] == ["c1"]


def _start_cli(*flags: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "CONVAI_API_KEY": "cli-key"}
    proc = subprocess.Popen([sys.executable, "-m", "convai_sync.emulator", "--port", "0", *flags],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        match = re.search(r"CONVAI_API_URL=(http://\S+)", proc.stderr.readline())
        if match:
            return proc, match.group(1)
    proc.kill()
    raise AssertionError("the emulator did not start")


def test_cli_flags_switch_the_quirks_on() -> None:
    proc, url = _start_cli("--lean-character-get", "--errors-in-200", "--unnamed-display", "model",
                           "--read-lag", "30", "--no-retry-after", "--max-inflight", "1",
                           "--latency-ms", "100")
    headers = {"CONVAI-API-KEY": "cli-key"}
    try:
        chars = httpx.post(url + "/character/list", headers=headers, verify=False).json()["characters"]
        got = httpx.post(url + "/character/get", json={"charID": chars[0]["character_id"]},
                         headers=headers, verify=False).json()
        assert "personalised_prompt_config" not in got                   # --lean-character-get
        refused = httpx.post(url + "/llm-models/deregister", json={"model_group_name": "nope"},
                             headers=headers, verify=False)
        assert (refused.status_code, refused.json()["status"]) == (200, "error")  # --errors-in-200
        body = {"model_group_name": "cli-new", "model_name": "m-x", "api_key": "sk-cli-0001",
                "is_uncensored": False}
        reply = httpx.post(url + "/llm-models/register", json=body, headers=headers, verify=False).json()
        assert reply["display_name"] == "m-x"                             # --unnamed-display model
        names = lambda: [m["model_group_name"] for m in httpx.post(  # noqa: E731
            url + "/llm-models/list", headers=headers, verify=False).json()["models"]]
        assert "cli-new" not in names()                                   # --read-lag
        with httpx.Client(timeout=5, verify=False) as client:                           # --no-retry-after
            slow = threading.Thread(target=lambda: client.post(url + "/character/list", headers=headers))
            slow.start()
            time.sleep(0.03)
            limited = client.post(url + "/character/list", headers=headers)
            slow.join()
        assert limited.status_code == 429 and "Retry-After" not in limited.headers
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_cli_refuses_an_unknown_unnamed_display() -> None:
    out = subprocess.run([sys.executable, "-m", "convai_sync.emulator", "--unnamed-display", "x"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "'x' is not one of 'code', 'model', 'blank'" in out.stderr
