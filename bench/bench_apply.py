"""Benchmark: plan and apply at growing sizes against the emulator with injected
latency, next to the baselines a user would otherwise have, in one run.

    python bench/bench_apply.py                      # 10..10,000 characters, 20 ms
    python bench/bench_apply.py --quick --latency-ms 1
    python bench/bench_apply.py --sweep 4,8,16,32    # apply time per --parallelism
    python bench/bench_apply.py --markdown bench/RESULTS.generated.md

For every size it generates a manifest and a drifted account (every model new,
3 characters in 10 rebound; see convai_sync/emulator/synthetic.py) and measures:

- convai-sync: plan (read + diff) and apply (execute) through the real client;
- sequential: the SAME committed write requests, sent one at a time by a plain
  httpx loop (what a script of curl/requests calls does), against a fresh copy
  of the same account;
- Terraform/decK-like: the same writes, phase by phase, 10 at a time (their
  default parallelism) by a plain httpx thread pool, against a fresh copy;
- the round-trip bound: sum over phases of ceil(writes in phase / parallelism)
  x latency, i.e. what an apply with zero overhead could do.

The emulator runs in its own process (by default) so that its CPU does not
compete with the client's for one interpreter lock. A CPU section times
load + validate + plan of 10,000 characters and 1,000 models.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convai_sync.emulator import Emulator, Faults  # noqa: E402
from convai_sync.emulator.synthetic import KEY_VARS, live_state, synthetic_account  # noqa: E402
from convai_sync.executor import execute  # noqa: E402
from convai_sync.manifest import load_manifest, resolve_secrets  # noqa: E402
from convai_sync.plan import Plan  # noqa: E402
from convai_sync.planner import Brakes, build_plan  # noqa: E402
from convai_sync.providers.convai import ConvaiClient  # noqa: E402

KEY = "bench-account-key"
MODELS_FOR = {10: 3, 100: 10, 1000: 30, 10000: 100}
TF_PARALLELISM = 10
BRAKES = Brakes(allow_empty=True, allow_deregister=True)


# --- the emulator, in a child process ---------------------------------------------------

def _serve(conn: Any, seed: dict, latency_ms: float) -> None:
    emu = Emulator(dialect="llm-models", account_key=KEY, seed=seed,
                   faults=Faults(latency_ms=latency_ms))
    emu.start()
    conn.send(emu.url)
    cpu = time.process_time()
    conn.recv()  # "stop"
    conn.send({**_stats(emu), "cpu": time.process_time() - cpu})
    emu.stop()


def _stats(emu: Emulator) -> dict[str, Any]:
    requests = emu.requests
    return {"requests": len(requests), "connections": emu.connections,
            "writes": [(r.path, r.body) for r in requests if r.committed],
            "failed": sum(1 for r in requests if r.status != 200),
            "orphans": len(emu.orphan_events), "cpu": float("nan")}


class EmulatorRun:
    """A fresh emulator holding `seed`; `.finish()` stops it and returns its log."""

    def __init__(self, seed: dict, latency_ms: float, in_process: bool):
        self._emu: Emulator | None = None
        if in_process:
            self._emu = Emulator(dialect="llm-models", account_key=KEY, seed=seed,
                                 faults=Faults(latency_ms=latency_ms))
            self.url = self._emu.start()
            return
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, seed, latency_ms), daemon=True)
        self._proc.start()
        self.url = self._conn.recv()

    def finish(self) -> dict[str, Any]:
        if self._emu is not None:
            stats = _stats(self._emu)
            self._emu.stop()
            return stats
        self._conn.send("stop")
        stats = self._conn.recv()
        self._proc.join(timeout=10)
        return stats


# --- one size -----------------------------------------------------------------------------

@dataclass
class Row:
    characters: int
    models: int
    changes: int
    plan_requests: int
    apply_requests: int
    plan_s: float
    apply_s: float
    sequential_s: float
    tf_s: float
    bound_s: float
    worst_phase_ratio: float
    connections: int
    phase_requests: list[int] = field(default_factory=list)


class PhaseClock:
    """A progress sink that notes when each phase starts (the executor's hook)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def phase(self, phase: Any, changes: list[Any]) -> None:
        self.starts.append(time.perf_counter())

    def finished(self, outcome: Any) -> None:
        pass


def phase_requests(plan: Plan) -> list[int]:
    """Write requests per phase: a replace is two (deregister, then register)."""
    return [sum(2 if c.action == "replace" else 1 for c in group) for _, group in plan.phases()]


def bound(per_phase: list[int], parallelism: int, latency_s: float) -> float:
    return sum(math.ceil(n / parallelism) * latency_s for n in per_phase)


def run_size(characters: int, models: int, args: argparse.Namespace, parallelism: int,
             baselines: bool = True) -> Row:
    account = synthetic_account(characters, models)
    latency_s = args.latency_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.yaml"
        path.write_text(account.manifest, "utf-8")
        loaded = load_manifest(path)
    keys = resolve_secrets(loaded, environ={}, placeholder="bench-model-key").keys

    emu = EmulatorRun(account.seed, args.latency_ms, args.in_process)
    try:
        with ConvaiClient(emu.url, KEY, parallelism=parallelism) as client:
            t0 = time.perf_counter()
            live = client.read_state("auto")
            plan = build_plan(loaded, live, BRAKES)
            plan_s = time.perf_counter() - t0
            assert live.requests == plan.meta["requests"]
            before = client.requests
            clock = PhaseClock()
            t0 = time.perf_counter()
            report = execute(plan, client, keys, parallelism=parallelism, progress=clock)
            apply_s = time.perf_counter() - t0
            apply_requests = client.requests - before
            if not report.ok:
                raise SystemExit(f"apply failed at {characters} characters: {report.to_json()}")
            if not build_plan(loaded, client.read_state("auto"), BRAKES).empty:
                raise SystemExit(f"apply did not converge at {characters} characters")
    finally:
        stats = emu.finish()
    if stats["orphans"]:
        raise SystemExit(f"{stats['orphans']} characters were orphaned during the apply")
    per_phase = phase_requests(plan)
    ends = clock.starts[1:] + [clock.starts[0] + apply_s]
    worst = max(((end - start) / bound([n], parallelism, latency_s) if latency_s else 0.0)
                for start, end, n in zip(clock.starts, ends, per_phase))
    writes = [(p, _with_key(b)) for p, b in stats["writes"]]
    assert len(writes) == apply_requests == sum(per_phase), (len(writes), apply_requests)
    sequential_s = tf_s = float("nan")
    if baselines:
        sequential_s = replay(account.seed, writes, [len(writes)], 1, args)
        tf_s = replay(account.seed, writes, per_phase, TF_PARALLELISM, args)
    return Row(characters, models, len(plan.changes), live.requests, apply_requests, plan_s,
               apply_s, sequential_s, tf_s, bound(per_phase, parallelism, latency_s), worst,
               stats["connections"], per_phase)


def _with_key(body: dict | None) -> dict:
    body = dict(body or {})
    if "api_key" in body:  # the log never holds a secret; any key does for a replay
        body["api_key"] = "bench-model-key"
    return body


def replay(seed: dict, writes: list[tuple[str, dict]], per_phase: list[int], parallelism: int,
           args: argparse.Namespace) -> float:
    """Send `writes` with a plain httpx client, phase by phase, `parallelism` at a
    time (1: a sequential loop), against a fresh copy of `seed`; the wall time."""
    emu = EmulatorRun(seed, args.latency_ms, args.in_process)
    limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
    try:
        with httpx.Client(base_url=emu.url, headers={"CONVAI-API-KEY": KEY},
                          limits=limits) as http:
            post = lambda w: http.post(w[0], json=w[1]).status_code  # noqa: E731
            t0 = time.perf_counter()
            if parallelism == 1:
                statuses = [post(w) for w in writes]
            else:
                statuses = []
                with ThreadPoolExecutor(parallelism) as pool:
                    start = 0
                    for n in per_phase:
                        statuses += pool.map(post, writes[start:start + n])
                        start += n
            elapsed = time.perf_counter() - t0
    finally:
        emu.finish()
    if any(s != 200 for s in statuses):
        raise SystemExit(f"a replayed write failed: {sorted(set(statuses))}")
    return elapsed


# --- CPU and big plans --------------------------------------------------------------------

def cpu_load_and_plan(characters: int, models: int, repeat: int) -> list[float]:
    """CPU seconds of load_manifest (read, parse, validate) + build_plan, per run."""
    account = synthetic_account(characters, models)
    live = live_state(account.seed)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.yaml"
        path.write_text(account.manifest, "utf-8")
        for _ in range(repeat):
            gc.collect()
            t0 = time.process_time()
            plan = build_plan(load_manifest(path), live, BRAKES)
            out.append(time.process_time() - t0)
            assert len(plan.changes) == account.registrations + account.character_updates
            del plan
    return out


def plan_wall_no_latency(characters: int, models: int, args: argparse.Namespace) -> tuple[float, int]:
    """Wall time of what `plan` does: load the manifest, read the account, diff."""
    account = synthetic_account(characters, models)
    emu = EmulatorRun(account.seed, 0.0, args.in_process)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "models.yaml"
            path.write_text(account.manifest, "utf-8")
            t0 = time.perf_counter()
            loaded = load_manifest(path)
            with ConvaiClient(emu.url, KEY) as client:
                live = client.read_state("auto")
                build_plan(loaded, live, BRAKES)
            elapsed = time.perf_counter() - t0
    finally:
        emu.finish()
    return elapsed, live.requests


# --- report --------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
            f"{dt.date.today().isoformat()}")


def fmt_s(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f} s"


def ratio(a: float, b: float) -> str:
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


def table(rows: list[Row], parallelism: int) -> str:
    head = ("| characters / models | changes | requests plan / apply | plan | apply "
            f"(p={parallelism}) | sequential | Terraform/decK-like (p={TF_PARALLELISM}) | "
            "round-trip bound | apply / sequential | apply / bound | worst phase / its bound "
            "| connections |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r.characters:,} / {r.models} | {r.changes:,} | {r.plan_requests} / "
            f"{r.apply_requests:,} | {fmt_s(r.plan_s)} | {fmt_s(r.apply_s)} | "
            f"{fmt_s(r.sequential_s)} | {fmt_s(r.tf_s)} | {fmt_s(r.bound_s)} | "
            f"{ratio(r.apply_s, r.sequential_s)} | {ratio(r.apply_s, r.bound_s)} | "
            f"{r.worst_phase_ratio:.2f}x | {r.connections} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request")
    ap.add_argument("--sizes", default="10,100,1000,10000",
                    help="character counts, comma-separated (models: 3/10/30/100, else ~1 per 33)")
    ap.add_argument("--parallelism", type=int, default=8, help="convai-sync --parallelism")
    ap.add_argument("--sweep", default="", help="also time the 1,000-character apply at these "
                    "parallelisms, e.g. 4,8,16,32")
    ap.add_argument("--cpu-size", default="10000,1000", help="characters,models for the CPU check")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one CPU run (a smoke test)")
    ap.add_argument("--in-process", action="store_true",
                    help="run the emulator in this process (faster start, less faithful timing)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes if "--sizes" in (argv or sys.argv) else "10,30"
        args.cpu_size = "300,30" if "--cpu-size" not in (argv or sys.argv) else args.cpu_size
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    cpu_chars, cpu_models = (int(x) for x in args.cpu_size.split(","))

    out = [f"Machine: {machine()}", "",
           f"Emulator latency {args.latency_ms:g} ms per request; emulator "
           f"{'in this process' if args.in_process else 'in its own process'}.", ""]
    print("\n".join(out), flush=True)
    rows = []
    for n in sizes:
        rows.append(run_size(n, MODELS_FOR.get(n, max(1, n // 33)), args, args.parallelism))
        print(f"  measured {n:,} characters", file=sys.stderr, flush=True)
    section = table(rows, args.parallelism)
    print(section, flush=True)
    out.append(section)

    if args.sweep:
        n = 1000 if not args.quick else sizes[-1]
        sweep = ["", f"Apply time by --parallelism ({n:,} characters, {MODELS_FOR.get(n, max(1, n // 33))} models):", "",
                 "| parallelism | apply | round-trip bound | apply / bound | connections |",
                 "|---|---|---|---|---|"]
        for p in (int(x) for x in args.sweep.split(",")):
            r = run_size(n, MODELS_FOR.get(n, max(1, n // 33)), args, p, baselines=False)
            sweep.append(f"| {p} | {fmt_s(r.apply_s)} | {fmt_s(r.bound_s)} | "
                         f"{ratio(r.apply_s, r.bound_s)} | {r.connections} |")
        print("\n".join(sweep), flush=True)
        out += sweep

    runs = cpu_load_and_plan(cpu_chars, cpu_models, 1 if args.quick else 5)
    wall, requests = plan_wall_no_latency(cpu_chars, cpu_models, args)
    cpu = ["", f"CPU: load + validate + plan of {cpu_chars:,} characters and {cpu_models:,} models: "
           f"median {statistics.median(runs):.3f} s, min {min(runs):.3f} s, max {max(runs):.3f} s "
           f"of CPU over {len(runs)} run(s).",
           f"Plan of {cpu_chars:,} characters and {cpu_models:,} models against the emulator with no "
           f"latency (load, read, diff): {wall:.3f} s wall, {requests} requests."]
    print("\n".join(cpu), flush=True)
    out += cpu
    if args.markdown:
        Path(args.markdown).write_text("\n".join(out) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
