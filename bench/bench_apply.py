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

The emulator runs in its own process, reset to a fresh copy of the seed before
every run, so that its CPU does not compete with the client's for one
interpreter lock (its CPU time is reported). A CPU section times load +
validate + plan of 10,000 characters and 1,000 models in a fresh process, and
the same at a tenth of the size (linear, not quadratic). Results: RESULTS.md.
"""
from __future__ import annotations

import argparse
import gc
import math
import multiprocessing
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

from host import EmulatorHost, machine, serve  # noqa: E402  (bench/ is the script's own folder)

from convai_sync.emulator import Emulator  # noqa: E402
from convai_sync.providers.convai.emulator.synthetic import live_state, synthetic_account  # noqa: E402
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

def _serve(conn: Any) -> None:
    """The child: one Convai emulator (host.serve)."""
    serve(conn, Emulator(dialect="llm-models", account_key=KEY))


class ConvaiHost(EmulatorHost):
    """The Convai emulator in its own process (see host.py)."""

    def __init__(self) -> None:
        super().__init__(_serve)

    def reset(self, seed: dict, latency_ms: float) -> str:
        """A fresh copy of `seed`, an empty log; returns the URL."""
        self.ask("reset", (seed, latency_ms))
        return self.url

    def stats(self) -> dict[str, Any]:
        """Requests, committed writes, connections opened, orphans and CPU seconds
        since the last reset."""
        return self.ask("stats")


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
    emulator_cpu_s: float
    phase_requests: list[int] = field(default_factory=list)


class PhaseClock:
    """A progress sink that notes when each phase starts (the executor's hook)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def phase(self, phase: Any, changes: list[Any]) -> None:
        self.starts.append(time.perf_counter())

    def finished(self, outcome: Any) -> None:
        pass

    def done(self) -> None:
        pass


def phase_requests(plan: Plan) -> list[int]:
    """Write requests per phase: a replace is two (deregister, then register)."""
    return [sum(2 if c.action == "replace" else 1 for c in group) for _, group in plan.phases()]


def bound(per_phase: list[int], parallelism: int, latency_s: float) -> float:
    return sum(math.ceil(n / parallelism) * latency_s for n in per_phase)


def run_size(host: ConvaiHost, characters: int, models: int, args: argparse.Namespace,
             parallelism: int, baselines: bool = True) -> Row:
    account = synthetic_account(characters, models)
    latency_s = args.latency_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.yaml"
        path.write_text(account.manifest, "utf-8")
        loaded = load_manifest(path)
    keys = resolve_secrets(loaded, environ={}, placeholder="bench-model-key").keys

    url = host.reset(account.seed, args.latency_ms)
    with ConvaiClient(url, KEY, parallelism=parallelism) as client:
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
        stats = host.stats()  # connections and emulator CPU of the plan and the apply
        if not report.ok:
            raise SystemExit(f"apply failed at {characters} characters: {report.to_json()}")
        if not build_plan(loaded, client.read_state("auto"), BRAKES).empty:
            raise SystemExit(f"apply did not converge at {characters} characters")
    if stats["orphans"]:
        raise SystemExit(f"{stats['orphans']} characters were orphaned during the apply")
    per_phase = phase_requests(plan)
    ends = clock.starts[1:] + [clock.starts[0] + apply_s]
    worst = max(((end - start) / bound([n], parallelism, latency_s) if latency_s else 0.0)
                for start, end, n in zip(clock.starts, ends, per_phase))
    writes = [(p, _with_key(b)) for p, b in stats["write_log"]]
    assert len(writes) == apply_requests == sum(per_phase), (len(writes), apply_requests)
    sequential_s = tf_s = float("nan")
    if baselines:
        sequential_s = replay(host, account.seed, writes, [len(writes)], 1, args)
        tf_s = replay(host, account.seed, writes, per_phase, TF_PARALLELISM, args)
    return Row(characters, models, len(plan.changes), live.requests, apply_requests, plan_s,
               apply_s, sequential_s, tf_s, bound(per_phase, parallelism, latency_s), worst,
               stats["connections"], stats["cpu"], per_phase)


def _with_key(body: dict | None) -> dict:
    body = dict(body or {})
    if "api_key" in body:  # the log never holds a secret; any key does for a replay
        body["api_key"] = "bench-model-key"
    return body


def replay(host: ConvaiHost, seed: dict, writes: list[tuple[str, dict]], per_phase: list[int],
           parallelism: int, args: argparse.Namespace) -> float:
    """Send `writes` with a plain httpx client, phase by phase, `parallelism` at a
    time (1: a sequential loop), against a fresh copy of `seed`; the wall time."""
    url = host.reset(seed, args.latency_ms)
    limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
    with httpx.Client(base_url=url, headers={"CONVAI-API-KEY": KEY}, limits=limits) as http:
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


def plan_wall_no_latency(host: ConvaiHost, characters: int, models: int) -> tuple[float, int]:
    """Wall time of what `plan` does: load the manifest, read the account, diff."""
    account = synthetic_account(characters, models)
    url = host.reset(account.seed, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.yaml"
        path.write_text(account.manifest, "utf-8")
        t0 = time.perf_counter()
        loaded = load_manifest(path)
        with ConvaiClient(url, KEY) as client:
            live = client.read_state("auto")
            build_plan(loaded, live, BRAKES)
        elapsed = time.perf_counter() - t0
    return elapsed, live.requests


# --- report --------------------------------------------------------------------------------

def fmt_s(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f} s"


def ratio(a: float, b: float) -> str:
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


def table(rows: list[Row], parallelism: int) -> str:
    head = ("| characters / models | changes | requests plan / apply | plan | apply "
            f"(p={parallelism}) | sequential | Terraform/decK-like (p={TF_PARALLELISM}) | "
            "round-trip bound | apply / sequential | apply / bound | worst phase / its bound "
            "| connections | emulator CPU |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r.characters:,} / {r.models} | {r.changes:,} | {r.plan_requests} / "
            f"{r.apply_requests:,} | {fmt_s(r.plan_s)} | {fmt_s(r.apply_s)} | "
            f"{fmt_s(r.sequential_s)} | {fmt_s(r.tf_s)} | {fmt_s(r.bound_s)} | "
            f"{ratio(r.apply_s, r.sequential_s)} | {ratio(r.apply_s, r.bound_s)} | "
            f"{r.worst_phase_ratio:.2f}x | {r.connections} | {fmt_s(r.emulator_cpu_s)} |")
    return "\n".join(lines)


def cli_default_parallelism() -> int:
    from convai_sync.cli import apply

    return next(p.default for p in apply.params if p.name == "parallelism")


def models_for(characters: int) -> int:
    return MODELS_FOR.get(characters, max(1, characters // 33))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request")
    ap.add_argument("--sizes", default=None, help="character counts, comma-separated "
                    "[10,100,1000,10000; --quick: 10,30]; models 3/10/30/100, else 1 per 33")
    ap.add_argument("--parallelism", type=int, default=cli_default_parallelism(),
                    help="convai-sync --parallelism [the CLI's default]")
    ap.add_argument("--sweep", default="", help="also time the 1,000-character apply at these "
                    "parallelisms, e.g. 4,8,16,32")
    ap.add_argument("--cpu-size", default=None,
                    help="characters,models for the CPU check [10000,1000; --quick: 300,30]")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one CPU run (a smoke test)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in (args.sizes or ("10,30" if args.quick else "10,100,1000,10000"))
             .split(",") if x.strip()]
    cpu_chars, cpu_models = (int(x) for x in
                             (args.cpu_size or ("300,30" if args.quick else "10000,1000")).split(","))

    out = [f"Machine: {machine()}", "",
           f"Emulator latency {args.latency_ms:g} ms per request, in its own process; "
           f"convai-sync --parallelism {args.parallelism}.", ""]
    print("\n".join(out), flush=True)

    def emit(*lines: str) -> None:
        out.extend(lines)
        print("\n".join(lines), flush=True)

    host = ConvaiHost()
    try:
        rows = []
        for n in sizes:
            rows.append(run_size(host, n, models_for(n), args, args.parallelism))
            print(f"  measured {n:,} characters", file=sys.stderr, flush=True)
        emit(table(rows, args.parallelism))
        if args.sweep:
            n = 1000 if 1000 in sizes or not args.quick else sizes[-1]
            emit("", f"Apply by --parallelism ({n:,} characters, {models_for(n)} models, "
                 f"{args.latency_ms:g} ms):", "",
                 "| parallelism | apply | round-trip bound | apply / bound | "
                 "worst phase / its bound | connections |", "|---|---|---|---|---|---|")
            for p in (int(x) for x in args.sweep.split(",")):
                r = run_size(host, n, models_for(n), args, p, baselines=False)
                emit(f"| {p} | {fmt_s(r.apply_s)} | {fmt_s(r.bound_s)} | "
                     f"{ratio(r.apply_s, r.bound_s)} | {r.worst_phase_ratio:.2f}x | "
                     f"{r.connections} |")

        wall, requests = plan_wall_no_latency(host, cpu_chars, cpu_models)
    finally:
        host.close()
    # in a fresh process, like a `convai-sync plan` run, not in this one's big heap
    repeat = 1 if args.quick else 5
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        runs = pool.apply(cpu_load_and_plan, (cpu_chars, cpu_models, repeat))
        small = pool.apply(cpu_load_and_plan, (cpu_chars // 10, max(1, cpu_models // 10), repeat))
    cpu = statistics.median(runs)
    emit("", f"CPU: load + validate + plan of {cpu_chars:,} characters and {cpu_models:,} "
                f"models: median {cpu:.3f} s (min {min(runs):.3f} s, max {max(runs):.3f} s) over "
                f"{len(runs)} run(s); a tenth of that size: median {statistics.median(small):.3f} s "
                f"({cpu / statistics.median(small):.1f}x for 10x the size).",
                f"Plan of {cpu_chars:,} characters and {cpu_models:,} models against the emulator "
                f"with no latency (load, read, diff): {wall:.3f} s wall, {requests} requests.")
    emit("", "Targets:", *[f"- {'met' if ok else 'MISSED'}: {what}" for ok, what in
                           targets(rows, cpu, wall, requests, cpu_chars)])
    if args.markdown:
        Path(args.markdown).write_text("\n".join(out) + "\n", "utf-8")
    return 0


def targets(rows: list[Row], cpu: float, wall: float, requests: int,
            cpu_chars: int) -> list[tuple[bool, str]]:
    out = [(all(r.plan_requests <= 3 for r in rows) and requests <= 3,
            "plan reads with at most 3 requests at every size")]
    for r in rows:
        if r.characters == 1000:
            out.append((r.apply_s <= 0.35 * r.sequential_s,
                        f"apply of {r.changes} changes <= 0.35x sequential "
                        f"({ratio(r.apply_s, r.sequential_s)})"))
            out.append((r.apply_s <= 1.3 * r.bound_s,
                        f"apply of {r.changes} changes <= 1.3x the round-trip bound "
                        f"({ratio(r.apply_s, r.bound_s)})"))
    if cpu_chars >= 10000:
        out.append((wall < 2.0, f"plan of {cpu_chars:,} characters under 2 s wall ({wall:.3f} s)"))
        out.append((cpu < 1.0, f"load + validate + plan under 1 s CPU ({cpu:.3f} s)"))
    return out


if __name__ == "__main__":
    sys.exit(main())
