"""Scale without timing: plans cost a constant number of requests, applies share one
pool of keep-alive connections, a rate-limited API slows the whole run down, progress
stays one line per phase, and the benchmark runs. Over real HTTP, no timed assertion."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import httpx
import pytest
import yaml

from conftest import ACCOUNT_KEY, EXAMPLE, ROOT, Result
from convai_sync import yamlpos
from convai_sync.emulator import Emulator, Faults
from convai_sync.providers.convai.emulator.synthetic import KEY_VARS, model_name, synthetic_account
from convai_sync.executor import execute
from convai_sync.manifest import parse_manifest, resolve_secrets
from convai_sync.planner import build_plan
from convai_sync.progress import StderrProgress
from convai_sync.providers.convai import ConvaiClient


@pytest.fixture
def bench_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEY_VARS:
        monkeypatch.setenv(var, f"sk-bench-{var.lower()}-0000")


def write_manifest(tmp_path: Path, text: str) -> str:
    path = tmp_path / "models.yaml"
    path.write_text(text, "utf-8")
    return str(path)


@pytest.mark.parametrize("characters", [10, 1000, 5000])
@pytest.mark.parametrize("dialect,expected", [("llm-models", 2), ("custom-llm", 3)])
def test_plan_reads_a_constant_number_of_requests_whatever_the_size(
        characters: int, dialect: str, expected: int, tmp_path: Path,
        make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    # auto dialect: one model list (two when it probes llm-models and falls back to
    # custom-llm), one character list; never one request per character
    account = synthetic_account(characters, 10)
    emu = make_emulator(dialect, seed=account.seed)
    text = account.manifest
    if dialect == "custom-llm":  # it cannot set display_name
        text = "".join(line for line in text.splitlines(True) if "display_name:" not in line)
    out = run("plan", "-f", write_manifest(tmp_path, text), "--api-url", emu.url,
              "--format", "json", "-v")
    assert out.code == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["meta"]["requests"] == expected
    assert doc["summary"]["characters"] == account.character_updates
    assert len(emu.requests) == expected  # counted by the server too
    assert f"read 0 models and {characters} characters in {expected} requests" in out.stderr


def test_a_character_list_without_models_falls_back_to_concurrent_gets_and_converges(
        tmp_path: Path, make_emulator: Callable[..., Emulator], run: Callable[..., Result],
        bench_env: None) -> None:
    # CONVAI_API.md: the real list may not carry MODEL/TEMPERATURE; then each character
    # is read with /character/get, concurrently, and everything else works the same
    account = synthetic_account(200, 5)
    emu = make_emulator(seed=account.seed, character_list_config=False,
                        faults=Faults(latency_ms=5))
    manifest = write_manifest(tmp_path, account.manifest)
    out = run("plan", "-f", manifest, "--api-url", emu.url, "--format", "json")
    assert out.code == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["meta"]["requests"] == 2 + 200
    assert doc["summary"]["characters"] == account.character_updates
    gets = [r for r in emu.requests if r.path == "/character/get"]
    assert len(gets) == 200
    assert 1 < emu.connections <= 10  # in parallel, over one bounded pool
    applied = run("apply", "-f", manifest, "--api-url", emu.url, "--auto-approve")
    assert applied.code == 0, applied.output[-2000:]
    assert "The account now matches the manifest." in applied.stdout
    assert emu.orphan_events == []


def test_an_account_that_never_returns_a_characters_model_is_refused_before_any_write(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result]) -> None:
    emu = make_emulator(character_list_config=False, character_get_config=False)
    out = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve")
    assert out.code == 1
    assert "POST /character/get (character '" in out.stderr
    assert "neither /character/list nor /character/get returned the model of 7 character(s)" \
        in out.stderr and "nothing was written" in out.stderr
    assert emu.writes() == []


@pytest.mark.parametrize("parallelism", [2, 8])
def test_apply_shares_one_pool_of_keep_alive_connections_and_logs_per_phase(
        parallelism: int, tmp_path: Path, make_emulator: Callable[..., Emulator],
        run: Callable[..., Result], bench_env: None) -> None:
    account = synthetic_account(1000, 30)  # 30 registrations, 300 character updates
    emu = make_emulator(seed=account.seed, faults=Faults(latency_ms=1))
    out = run("apply", "-f", write_manifest(tmp_path, account.manifest), "--api-url", emu.url,
              "--auto-approve", "--parallelism", str(parallelism))
    assert out.code == 0, out.stderr[-2000:]
    assert "The account now matches the manifest." in out.stdout
    assert len(emu.writes()) == 330 and emu.orphan_events == []
    # plan, apply and the closing re-read all reuse the pool: never more connections
    # than --parallelism, however many requests
    assert 1 <= emu.connections <= parallelism
    # a CI log gets one line per phase start and one per phase result, not one per change
    phase_lines = [line for line in out.stderr.splitlines() if line.startswith("Phase ")]
    # numbered as the plan numbers them: among the phases it has
    assert phase_lines == ["Phase 1/2 register new models: 30 changes",
                           "Phase 1/2 register new models: 30 done",
                           "Phase 2/2 rebind characters: 300 changes",
                           "Phase 2/2 rebind characters: 300 done"]
    assert "Phase 2/2: rebind characters" in out.stdout  # the plan shown before
    assert "character" not in out.stderr.replace("rebind characters", "")


def test_a_rate_limited_api_slows_the_whole_run_down_and_the_apply_converges(
        tmp_path: Path, make_emulator: Callable[..., Emulator], run: Callable[..., Result],
        bench_env: None) -> None:
    account = synthetic_account(200, 10)  # 70 writes
    emu = make_emulator(seed=account.seed,
                        faults=Faults(max_inflight=2, retry_after=0.01, latency_ms=2))
    out = run("apply", "-f", write_manifest(tmp_path, account.manifest), "--api-url", emu.url,
              "--auto-approve", "--parallelism", "16")
    assert out.code == 0, out.stderr[-2000:]
    assert "The account now matches the manifest." in out.stdout
    assert len(emu.writes()) == 70 and emu.orphan_events == []
    throttled = [r for r in emu.requests if r.status == 429]
    # 16 threads against a cap of 2: the first burst is refused, then the shared limit
    # settles at the cap and probes above it rarely (one 429 per few requests before)
    assert 0 < len(throttled) <= 16 + 70 // 10
    assert emu.connections <= 16


def test_progress_bar_on_a_terminal_redraws_in_place_and_prints_failures_in_full(
        make_emulator: Callable[..., Emulator], env: dict[str, str]) -> None:
    account = synthetic_account(100, 3)  # 3 registrations, 30 character updates
    emu = make_emulator(seed=account.seed)
    loaded = parse_manifest(account.manifest, "models.yaml")
    stream = io.StringIO()
    with ConvaiClient(emu.url, ACCOUNT_KEY) as client:
        plan = build_plan(loaded, client.read_state())
        # someone registers one of the models behind our back: its register fails (409)
        httpx.post(emu.url + "/llm-models/register", headers={"CONVAI-API-KEY": ACCOUNT_KEY},
                   json={"model_group_name": model_name(1), "model_name": "x", "api_key": "k",
                         "is_uncensored": False, "display_name": "Elsewhere"}, verify=False)
        report = execute(plan, client, resolve_secrets(loaded, environ={}, placeholder="p").keys,
                         progress=StderrProgress(stream, plan, tty=True))
    text = stream.getvalue()
    assert not report.ok
    assert text.startswith("\rPhase 1/2 register new models [....................] 0/3")
    assert f'  failed: register model "{model_name(1)}": ' in text and "HTTP 409" in text
    assert text.endswith("[####################] 3/3 (2 done, 1 failed)\n")
    assert "rebind" not in text  # no later phase ran
    assert text.count("\n") == 2  # the failure and the finished bar


# `<<` merges where written keys override merged ones, and a merged mapping that is
# itself built again through another alias
MERGE_OVERRIDES = "base: &y {a: 1, b: 2}\nx: &x\n  <<: *y\n  b: 3\nz: *x\nw: {<<: [*x, *y], a: 9}\n"


@pytest.mark.parametrize("text", [EXAMPLE.read_text("utf-8"), synthetic_account(50, 5).manifest,
                                  "a: &x {b: 1}\nc:\n  <<: *x\n  d: [1, 2.5, null, yes, '3']\n",
                                  MERGE_OVERRIDES])
def test_libyaml_loader_gives_the_same_data_and_lines_as_the_pure_python_one(text: str) -> None:
    fast = yamlpos.load(text)
    slow = yamlpos._load(yaml.SafeLoader, text)
    assert (fast.data, fast.lines, fast.key_lines) == (slow.data, slow.lines, slow.key_lines)
    assert fast.data == yaml.safe_load(text)  # YAML's own meaning, merge keys included


@pytest.mark.long
def test_benchmark_smoke(tmp_path: Path) -> None:
    report = tmp_path / "bench.md"
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_apply.py"), "--quick",
                          "--sizes", "10,100", "--latency-ms", "10", "--markdown", str(report)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    # 100 characters / 10 models: 10 registrations + 30 rebinds, 40 writes of 10 ms each.
    # A sequential executor needs >= 400 ms and lands at ~1.0x; ten at a time ~0.2x.
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 100 / 10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["40", "2 / 40"], row  # one request per write, two reads to plan
    apply_s, sequential_s = float(cells[4].split()[0]), float(cells[5].split()[0])
    assert sequential_s >= 0.4, row
    assert apply_s / sequential_s <= 0.6, row
    for column in ("characters / models", "requests plan / apply", "sequential",
                   "Terraform/decK-like (p=10)", "round-trip bound", "apply / sequential",
                   "apply / bound", "connections"):
        assert column in out.stdout
    assert "| 10 / 3 | 6 | 2 / 6 |" in out.stdout
    assert "CPU: load + validate + plan of 300 characters and 30 models" in out.stdout
    assert "MISSED" not in out.stdout
    assert report.read_text("utf-8").startswith("Machine: ")
