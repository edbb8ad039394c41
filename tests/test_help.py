"""--help says what each command does, whole and right for that command."""
from __future__ import annotations

import re
from typing import Callable

import httpx
import pytest

from conftest import ACCOUNT_KEY, Result
from convai_sync.emulator import Emulator


def help_of(run: Callable[..., Result], *command: str) -> str:
    out = run(*command, "--help")
    assert out.code == 0, out.output
    return " ".join(out.stdout.split())


def test_top_level_help_lists_every_command_uncut(run: Callable[..., Result]) -> None:
    text = run("--help").stdout
    commands = re.findall(r"^  (\w+)\s{2,}(.+)$", text, re.M)
    assert {c for c, _ in commands} >= {"apply", "plan", "drift", "export", "show", "emulator",
                                         "validate", "schema"}
    assert all(not line.endswith("...") for _, line in commands), text


@pytest.mark.parametrize("command", ["plan", "drift", "export"])
def test_parallelism_on_read_only_commands_is_about_reads(run: Callable[..., Result],
                                                          command: str) -> None:
    text = help_of(run, command)
    assert "--parallelism INTEGER RANGE Concurrent requests, for reads that need several " \
           "(this command writes nothing)." in text


def test_parallelism_on_apply_is_about_writes(run: Callable[..., Result]) -> None:
    assert "Concurrent requests: writes inside an apply phase" in help_of(run, "apply")


def test_export_state_file_help_names_no_manifest(run: Callable[..., Result]) -> None:
    text = help_of(run, "export")
    state = text.split("--state-file FILE", 1)[1].split(" --", 1)[0]
    assert "MANIFEST" not in state and "this command reads no state file" in state


@pytest.mark.parametrize("command", ["plan", "apply", "drift", "show"])
def test_commands_that_colour_take_no_color(run: Callable[..., Result], command: str) -> None:
    assert "--no-color No colour, even on a terminal" in help_of(run, command)


def test_drift_takes_the_brake_flags(run: Callable[..., Result]) -> None:
    text = help_of(run, "drift")
    assert "--allow-deregister" in text and "--allow-empty" in text


def test_emulator_help_documents_seed_files_and_adding_characters(run: Callable[..., Result]) -> None:
    text = help_of(run, "emulator")
    assert "convai: {dialect?, models: [{model_group_name, model_name, base_url, api_key" in text
    assert "langbot: {models: [{name, base_url, api_keys" in text
    assert "vapi: {credentials: [{name, apiKey" in text
    assert "POST $CONVAI_API_URL/_emulator/characters" in text


def test_characters_can_be_added_to_a_running_emulator(make_emulator: Callable[..., Emulator],
                                                       run: Callable[..., Result]) -> None:
    emu = make_emulator(seed={"models": [], "characters": []})
    url = emu.url + "/_emulator/characters"
    new = {"character_id": "c-new", "character_name": "Newcomer", "model_group_name": "gpt-4o-mini",
           "temperature": 0.3}
    assert httpx.post(url, json={"characters": [new]}, verify=False).status_code == 401  # the account key
    headers = {"CONVAI-API-KEY": ACCOUNT_KEY}
    reply = httpx.post(url, headers=headers, json={"characters": [new]}, verify=False)
    assert (reply.status_code, reply.json()) == (200, {"added": ["c-new"]})
    assert emu.characters()["c-new"]["character_name"] == "Newcomer"
    exported = run("export", "--api-url", emu.url)
    assert "char_id: c-new" in exported.stdout
    bad = httpx.post(url, headers=headers, json={"characters": [{"character_id": "x"}]}, verify=False)
    assert bad.status_code == 400 and "character_name" in bad.json()["ERROR"]
    assert httpx.post(url, headers=headers, json={"chars": []}, verify=False).status_code == 400
