"""Finding 9 of issue 11: credentials in --api-url (http://user:pass@host) must reach no
file (the state file CI commits, the saved plan it uploads) and no output."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from conftest import EXAMPLE, Result
from convai_sync.emulator import Emulator


def test_credentials_in_the_api_url_reach_no_file_and_no_output(
        run: Callable[..., Result], make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator()
    url = emu.url.replace("http://", "http://studio-admin:Pa55w0rd-x9@")
    state, saved = tmp_path / "models.state.json", tmp_path / "plan.json"
    manifest = tmp_path / "models.yaml"
    manifest.write_text(EXAMPLE.read_text().replace("studio-turbo\n    model_name", "studio-turbo\n"
                                                    "    api_key_version: 2\n    model_name", 1))
    planned = run("plan", "-f", str(manifest), "--api-url", url, "--out", str(saved), "-vv")
    applied = run("apply", str(saved), "--api-url", url, "--auto-approve", "-vv",
                  "--state-file", str(state))
    assert planned.code == 0 and applied.code == 0, planned.output + applied.output
    assert json.loads(saved.read_text())["saved_plan"]["account"] == emu.url
    assert list(json.loads(state.read_text())["accounts"]) == [f"models@{emu.url}"]
    everything = planned.output + applied.output + saved.read_text() + state.read_text()
    assert "Pa55w0rd-x9" not in everything and "studio-admin" not in everything
    assert "ignoring the user name and password" in planned.stderr
