"""A canary key in every model, and the account key, must appear in no stdout,
stderr, log, plan file, JSON report, exported manifest or error message, across
every command and every failure path."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import ACCOUNT_KEY, CANARIES, EXAMPLE, Result, assert_no_secret
from convai_sync.emulator import Emulator, Faults


@pytest.fixture
def canary_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example with its own canary variable per model (and a key version)."""
    lines, n = [], 0
    for line in EXAMPLE.read_text().splitlines():
        if line.strip().startswith("api_key: ${"):
            var, value = f"CANARY_KEY_{n}", f"sk-CANARY-model{n}-c0ffee"
            monkeypatch.setenv(var, value)
            CANARIES_PER_RUN[var] = value
            line = f"    api_key: ${{{var}}}\n    api_key_version: 1"
            n += 1
        lines.append(line)
    assert n == 3
    path = tmp_path / "models.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


CANARIES_PER_RUN: dict[str, str] = {}


def everything_written(tmp_path: Path) -> list[str]:
    """Every file the commands wrote (the test's own plaintext input aside)."""
    return [p.read_text(errors="replace") for p in tmp_path.rglob("*")
            if p.is_file() and p.name != "plain.yaml"]


def check(*results: Result, files: list[str]) -> None:
    texts = [r.output for r in results] + files
    assert_no_secret(*texts)
    for value in CANARIES_PER_RUN.values():
        assert all(value not in t for t in texts)


def test_no_secret_in_any_command_output_or_file(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result],
        canary_manifest: Path, tmp_path: Path) -> None:
    emu = make_emulator()
    m, url = str(canary_manifest), ("--api-url", emu.url)
    plan_file, export_file = tmp_path / "plan.json", tmp_path / "exported.yaml"
    results = [
        run("validate", "-f", m),
        run("plan", "-f", m, *url, "-vv"),
        run("plan", "-f", m, *url, "--format", "json"),
        run("plan", "-f", m, *url, "--format", "markdown"),
        run("plan", "-f", m, *url, "--out", str(plan_file)),
        run("show", str(plan_file), "--format", "markdown"),
        run("drift", "-f", m, *url, "--format", "json"),
        run("apply", str(plan_file), *url, "--auto-approve", "-vv",
            "--report-file", str(tmp_path / "report1.json")),
        run("apply", "-f", m, *url, "--auto-approve", "-vv", "--report-file", str(tmp_path / "report2.json")),
        run("drift", "-f", m, *url, "--format", "markdown"),
        run("export", *url, "-o", str(export_file)),
        run("apply", "-f", m, *url, "--auto-approve", "-vv", "--replace", "studio-turbo"),
        run("ping", *url, "-vv"),
        # the example's endpoints cannot be reached from a test: checked, and reported failing
        run("check", "-f", m, *url, "-vv"),
        run("drift", "-f", m, *url, "--check-endpoints", "--format", "markdown"),
    ]
    assert [r.code for r in results] == [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 2], \
        [r.output for r in results]
    assert "unreachable" in results[-2].stdout
    assert "DEBUG" in results[1].stderr  # -vv really logged the HTTP traffic
    # every key reached the emulator, so the canaries were really in play
    assert {emu.models()[g]["api_key"] for g in ("studio-qwen-rp", "studio-llama-70b")} == {
        CANARIES_PER_RUN["CANARY_KEY_2"], CANARIES_PER_RUN["CANARY_KEY_1"]}
    check(*results, files=everything_written(tmp_path))


def test_no_secret_on_failure_paths(make_emulator: Callable[..., Emulator], run: Callable[..., Result],
                                    canary_manifest: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator()
    m, url = str(canary_manifest), ("--api-url", emu.url)
    results = []
    # the API fails every request: retries give up
    emu.faults = Faults(rate=1.0, seed=2)
    results.append(run("apply", "-f", m, *url, "--auto-approve", "--retry-max-time", "0.2", "-vv"))
    # replies lost after commit, half the time
    emu.faults = Faults(after_commit=0.5, rate=0.2, seed=4)
    results.append(run("apply", "-f", m, *url, "--auto-approve", "-vv",
                       "--report-file", str(tmp_path / "r.json")))
    emu.faults = Faults()
    # a write the API rejects (a character bound to a code the account lacks)
    bad = tmp_path / "bad.yaml"
    bad.write_text(canary_manifest.read_text().replace("api_dialect: auto", "api_dialect: auto\n  builtin_models: [gpt-nope]")
                   .replace("model_group_name: gpt-4o\n", "model_group_name: gpt-nope\n"))
    results.append(run("apply", "-f", str(bad), *url, "--auto-approve", "--report-file", str(tmp_path / "r2.json")))
    # a stale saved plan
    plan_file = tmp_path / "plan.json"
    emu.load_seed(__import__("convai_sync.emulator", fromlist=["demo_seed"]).demo_seed())
    run("plan", "-f", m, *url, "--out", str(plan_file))
    emu.load_seed({"models": [], "characters": []})
    results.append(run("apply", str(plan_file), *url, "--auto-approve"))
    # a wrong account key: the wrong key is a secret too
    monkeypatch.setenv("CONVAI_API_KEY", "wrong-account-key-5150")
    results.append(run("plan", "-f", m, *url))
    monkeypatch.setenv("CONVAI_API_KEY", ACCOUNT_KEY)
    # a plaintext key in the manifest is never echoed back
    plain = tmp_path / "plain.yaml"
    plain.write_text(canary_manifest.read_text().replace("${CANARY_KEY_0}", CANARIES_PER_RUN["CANARY_KEY_0"]))
    results.append(run("plan", "-f", str(plain), *url))
    assert [r.code for r in results] == [1, results[1].code, 1, 1, 1, 1]
    assert "wrong-account-key-5150" not in results[4].output
    check(*results, files=everything_written(tmp_path))
    assert all(v not in r.output for r in results for v in CANARIES.values())
