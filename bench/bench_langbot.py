"""Benchmark (LangBot): pipeline repoints against the LangBot emulator with
injected latency, next to the round-trip bound and to a sequential run of the
same engine (--parallelism 1); and, with --real, one measured run against a
real LangBot 4.11.2 server.

    python bench/bench_langbot.py                  # 100 and 1,000 pipelines, 20 ms
    python bench/bench_langbot.py --quick          # 100 pipelines only
    python bench/bench_langbot.py --real           # the real-server run only
    python bench/bench_langbot.py --sizes 1000 --sequential-sizes 100,1000

Emulator rows. The emulator (`LangBotEmulator`, Faults(latency_ms=20)) runs in
its own process, reset to a fresh seed before every run, so that its CPU does
not compete with the client's for one interpreter lock. The seed holds N models
(explicit uuids, one shared provider) and P pipelines (explicit uuids, the full
4.11.2 pipeline config with the LocalAgent runner), pipeline i on model i % N.
The manifest (platform: langbot) moves pipeline i to model (i + 1) % N, so
every pipeline is repointed, and changes extra_args of 3 models: 3 model
updates + P pipeline rebinds. Through the real engine (engine.read_live,
make_plan, apply_plan: the functions `convai-sync plan/apply` call) it measures:

- plan: requests and wall time of read + diff. Always 2 requests: the model
  list (each item embeds its provider, api_keys included) and the pipeline list
  (each item carries its full config); nothing is read per object at plan time;
- apply: wall time and requests. A model update is one PUT; a rebind is a GET
  of the pipeline and a PUT of its whole config (a fragment would wipe the
  rest), so P rebinds are 2P requests;
- the round-trip bound: per phase ceil(requests in the phase / parallelism) x
  latency, summed: an apply with zero overhead;
- sequential: the same engine at --parallelism 1, measured at the sizes in
  --sequential-sizes and otherwise extrapolated from the largest measured one
  (its seconds per request x this size's requests), marked "(extrapolated)".

--real starts a real LangBot server (tests/langbot_server.py, installed by
.ci/install-langbot), creates 10 models and 100 pipelines on them through
LangBot's own API (raw httpx), then runs the CLI in-process: one `apply` of a
manifest that adds 10 new models and repoints the 100 pipelines onto them must
exit 0 with "The account now matches the manifest.", and a following `plan`
must say "No changes.". Wall times and requests (by method) are printed.
Results: RESULTS.md ("LangBot").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host import EmulatorHost, environment, machine, serve  # noqa: E402  (bench/ is the script's own folder)
sys.path.insert(0, str(ROOT / "tests"))

from convai_sync.engine import Options, apply_plan, converged, make_plan, read_live, sync_state  # noqa: E402
from convai_sync.manifest import load_manifest, resolve_secrets  # noqa: E402
from convai_sync.planner import Brakes  # noqa: E402
from convai_sync.providers.langbot import LangBotClient  # noqa: E402

KEY = "bench-langbot-account-key"
MODEL_KEY_ENV = "BENCH_LB_MODEL_KEY"
MODEL_KEY = "sk-bench-langbot-model-7f3a"
NEW_KEY_ENV = "BENCH_LB_NEW_KEY"
NEW_KEY = "sk-bench-langbot-new-91c2"
BASE_URL = "https://llm.bench.example/v1"
MODELS_FOR = {100: 10, 1000: 30}
UPDATED = 3  # models whose extra_args change
BRAKES = Brakes(allow_empty=True, allow_deregister=True)
RUNNER = "plugin:langbot-team/LocalAgent/default"
FIXTURE = ROOT / "tests" / "fixtures" / "langbot_pipeline_config.json"


# --- the emulator, in a child process ---------------------------------------------------

def _serve(conn: Any) -> None:
    from convai_sync.providers.langbot.emulator import LangBotEmulator
    serve(conn, LangBotEmulator(api_key=KEY, seed={"models": [], "pipelines": []}))


# --- the workspace --------------------------------------------------------------------

def uid(kind: int, i: int) -> str:
    return f"{kind:08d}-0000-4000-8000-{i:012d}"


def account(pipelines: int, models: int) -> tuple[dict, str]:
    """A seed (pipeline i on model i % N) and a manifest moving pipeline i to
    model (i + 1) % N and changing extra_args of the first UPDATED models."""
    seed = {"models": [{"uuid": uid(1, j), "name": f"bench-model-{j}", "base_url": BASE_URL,
                        "api_keys": [MODEL_KEY], "abilities": ["func_call"],
                        "extra_args": {"temperature": 0.5}, "context_length": 32000}
                       for j in range(models)],
            "pipelines": [{"uuid": uid(2, i), "name": f"Pipeline {i}", "model": uid(1, i % models),
                           "prompt": f"You are bench pipeline {i}."} for i in range(pipelines)]}
    lines = ["version: 1", "platform: langbot", "settings:", "  prune: false", "models:"]
    for j in range(models):
        temperature = 0.9 if j < UPDATED else 0.5
        lines += [f"  - key: m{j}", f"    name: bench-model-{j}", f"    base_url: {BASE_URL}",
                  f"    api_keys: [\"${{{MODEL_KEY_ENV}}}\"]", "    abilities: [func_call]",
                  f"    extra_args: {{temperature: {temperature}}}", "    context_length: 32000"]
    lines.append("pipelines:")
    lines += [f"  - {{uuid: {uid(2, i)}, model: m{(i + 1) % models}}}" for i in range(pipelines)]
    return seed, "\n".join(lines) + "\n"


# --- one size -------------------------------------------------------------------------

class PhaseClock:
    """A progress sink noting when each phase starts and the client's request
    count then (the executor's hook)."""

    def __init__(self, client: LangBotClient) -> None:
        self.client = client
        self.marks: list[tuple[str, float, int]] = []

    def phase(self, phase: Any, changes: list[Any]) -> None:
        self.marks.append((phase.name.lower(), time.perf_counter(), self.client.requests))

    def finished(self, outcome: Any) -> None:
        pass

    def done(self) -> None:
        pass


@dataclass
class Run:
    pipelines: int
    models: int
    parallelism: int
    changes: int
    plan_requests: int
    plan_s: float
    apply_requests: int
    apply_s: float
    bound_s: float
    phases: list[tuple[str, int, float, float]]  # name, requests, seconds, its bound
    connections: int
    emulator_cpu_s: float
    client_cpu_s: float


def bound(requests: int, parallelism: int, latency_s: float) -> float:
    return math.ceil(requests / parallelism) * latency_s


def run(host: EmulatorHost, pipelines: int, models: int, parallelism: int,
        latency_ms: float) -> Run:
    seed, text = account(pipelines, models)
    latency_s = latency_ms / 1000
    os.environ[MODEL_KEY_ENV] = MODEL_KEY
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "langbot.yaml"
        path.write_text(text, "utf-8")
        loaded = load_manifest(path)
        keys = resolve_secrets(loaded).keys
        options = Options(BRAKES, str(Path(tmp) / "langbot.state.json"), False, parallelism)
        host.ask("reset", (seed, latency_ms))
        with LangBotClient(host.url, KEY, parallelism=parallelism) as client:
            state = sync_state(str(path), loaded.environment, client, options)
            t0 = time.perf_counter()
            live = read_live(loaded, client, state, options)
            plan = make_plan(loaded, client, options, state, live)
            plan_s = time.perf_counter() - t0
            assert client.requests == live.requests == 2, live.requests
            summary = plan.summary()
            assert summary["update"] == UPDATED and summary["characters"] == pipelines, summary
            assert len(plan.changes) == UPDATED + pipelines, len(plan.changes)
            before = client.requests
            clock = PhaseClock(client)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            report = apply_plan(plan, client, keys, state, options, progress=clock)
            end = time.perf_counter()
            client_cpu = time.process_time() - cpu0
            apply_requests = client.requests - before
            stats = host.ask("stats")
            if not report.ok:
                raise SystemExit(f"apply failed at {pipelines} pipelines: {report.to_json()}")
            if not converged(loaded, client, options, state, plan).empty:
                raise SystemExit(f"apply did not converge at {pipelines} pipelines")
    if stats["orphans"]:
        raise SystemExit(f"{stats['orphans']} pipelines were orphaned during the apply")
    phases = []
    marks = clock.marks + [("finish", end, before + apply_requests)]
    for (name, start, count), (_, stop, count_after) in zip(marks, marks[1:]):
        n = count_after - count
        phases.append((name, n, stop - start, bound(n, parallelism, latency_s)))
    return Run(pipelines, models, parallelism, len(plan.changes), live.requests, plan_s,
               apply_requests, end - t0, sum(p[3] for p in phases), phases,
               stats["connections"], stats["cpu"], client_cpu)


# --- --profile: where the client's time goes -------------------------------------------

def profile(args: argparse.Namespace, pipelines: int = 1000) -> list[str]:
    """Thread CPU of each part of the client during one apply, then the same
    apply with rebound()'s DeepDiff check replaced (in this process only) by a
    plain == of the two configs with the model reference put back, DeepDiff
    being called only to name the difference when they differ."""
    import copy
    from convai_sync.errors import ConvaiSyncError
    from convai_sync.providers import http, transport
    from convai_sync.providers.langbot import client as lbc

    spent: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    lock = threading.Lock()
    undo: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        undo.append((owner, name, original))

        def timed(*a: Any, **k: Any) -> Any:
            c0 = time.thread_time()
            try:
                return original(*a, **k)
            finally:
                with lock:
                    spent[label] += time.thread_time() - c0
                    calls[label] += 1
        setattr(owner, name, timed)

    models = MODELS_FOR.get(pipelines, max(1, pipelines // 33))
    host = EmulatorHost(_serve)
    out = [f"Profile of the {pipelines:,}-pipeline apply (thread CPU by part; the timers add "
           "some overhead):", ""]
    try:
        wrap(lbc.LangBotClient, "bind", "bind() in all")
        wrap(lbc, "rebound", "rebound(): deepcopy + DeepDiff of the config")
        wrap(http.HttpSession, "_once", "HttpSession._once in all")
        wrap(transport.JsonTransport, "request", "JsonTransport.request: json.dumps, httpcore, h11")
        wrap(http.HttpSession, "_decode", "HttpSession._decode: response.json()")
        r = run(host, pipelines, models, args.parallelism, args.latency_ms)
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
        out.append(f"apply {r.apply_s:.3f} s = {r.apply_s / r.bound_s:.2f}x the bound, client CPU "
                   f"{r.client_cpu_s:.2f} s for {r.apply_requests:,} requests:")
        out += [f"- {label}: {s:.3f} s ({calls[label]:,} calls, {s / calls[label] * 1000:.3f} ms each)"
                for label, s in spent.most_common()]

        original_rebound = lbc.rebound

        def rebound(config: Any, target: str, obj: str) -> dict[str, Any]:
            new = copy.deepcopy(config)
            slot = lbc._model_slot(new)
            if slot is None:
                return original_rebound(config, target, obj)  # its own error
            old, slot["primary"] = slot.get("primary"), target
            slot["primary"] = old
            same = new == config
            slot["primary"] = target
            if not same:
                from deepdiff import DeepDiff
                raise ConvaiSyncError(f"internal error: rebinding {obj} would change more than "
                                      f"its model ({sorted(DeepDiff(config, new))})")
            return new

        lbc.rebound = rebound
        try:
            whatif = [run(host, pipelines, models, args.parallelism, args.latency_ms)
                      for _ in range(3)]
            lbc.rebound = original_rebound
            asis = [run(host, pipelines, models, args.parallelism, args.latency_ms) for _ in range(3)]
        finally:
            lbc.rebound = original_rebound
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
        host.close()
    fmt = lambda rs: ", ".join(f"{x.apply_s:.2f} s = {x.apply_s / x.bound_s:.2f}x "  # noqa: E731
                               f"(client CPU {x.client_cpu_s:.2f} s)" for x in rs)
    out += ["", f"As is, 3 runs: {fmt(asis)}.",
            f"What-if, rebound() checked with == (DeepDiff only on a difference), 3 runs: "
            f"{fmt(whatif)}."]
    return out


# --- the real server ------------------------------------------------------------------

class RequestCounter:
    """Counts what every HttpSession sends, by method (patched in for --real only)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        from convai_sync.providers.http import HttpSession
        original = HttpSession._once

        def counted(session: Any, method: str, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.counts[method] += 1
            return original(session, method, *args, **kwargs)

        HttpSession._once = counted  # type: ignore[method-assign]

    def take(self) -> Counter[str]:
        with self._lock:
            out, self.counts = self.counts, Counter()
        return out


class ApplyTimer:
    """Times the executor's part of a CLI apply (engine.apply_plan, as cli_common
    calls it) and each of its phases, by wrapping it (for --real only)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float, int]] = []
        self.seconds = 0.0
        self.requests = 0

    def install(self) -> None:
        from convai_sync import cli_common
        original = cli_common.apply_plan
        timer = self

        class Tee:
            def __init__(self, inner: Any, client: Any) -> None:
                self.inner, self.client = inner, client

            def phase(self, phase: Any, changes: list[Any]) -> None:
                timer.marks.append((phase.name.lower(), time.perf_counter(), self.client.requests))
                self.inner.phase(phase, changes)

            def finished(self, outcome: Any) -> None:
                self.inner.finished(outcome)

            def done(self) -> None:
                self.inner.done()

        def timed(plan: Any, client: Any, keys: Any, state: Any, options: Any,
                  progress: Any = None) -> Any:
            before, t0 = client.requests, time.perf_counter()
            timer.marks = []
            try:
                return original(plan, client, keys, state, options, Tee(progress, client))
            finally:
                end = time.perf_counter()
                timer.seconds, timer.requests = end - t0, client.requests - before
                timer.marks.append(("finish", end, client.requests))

        cli_common.apply_plan = timed  # type: ignore[assignment]

    def phases(self) -> str:
        return "; ".join(f"{name} {b[2] - a[2]} requests in {b[1] - a[1]:.2f} s"
                         for a, b in zip(self.marks, self.marks[1:]) for name in [a[0]])


def cli(*argv: str) -> tuple[int, str, str, float]:
    """Run `convai-sync ARGV` in this process: exit code, stdout, stderr, wall time."""
    from convai_sync.cli import run_captured
    t0 = time.perf_counter()
    code, out, err = run_captured(list(argv))
    return code, out, err, time.perf_counter() - t0


def server_cpu(lb: Any) -> float:
    """CPU seconds (user + system) the LangBot process has used so far."""
    try:
        fields = Path(f"/proc/{lb.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return float("nan")


def real_run(pipelines: int, old_models: int, new_models: int, parallelism: int) -> list[str]:
    from langbot_server import LangBotServer, find_langbot
    if find_langbot() is None:
        raise SystemExit("--real: LangBot 4.11.2 is not installed; run .ci/install-langbot")
    counter = RequestCounter()
    counter.install()
    timer = ApplyTimer()
    timer.install()
    old_url, new_url = "http://127.0.0.1:9/old/v1", "http://127.0.0.1:9/new/v1"
    out: list[str] = []
    t0 = time.perf_counter()
    with LangBotServer() as lb, lb.client(timeout=60) as http, \
            tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter() - t0

        def call(method: str, path: str, body: Any = None) -> Any:
            r = http.request(method, path, json=body)
            if r.status_code != 200:
                raise SystemExit(f"--real setup: {method} {path}: {r.status_code} {r.text[:300]}")
            return r.json()["data"]

        t0 = time.perf_counter()
        olds = [call("POST", "/api/v1/provider/models/llm", {
            "name": f"old-model-{j}", "extra_args": {"temperature": 0.5},
            "provider": {"requester": "openai-chat-completions", "base_url": old_url,
                         "api_keys": [MODEL_KEY]}})["uuid"] for j in range(old_models)]
        template = json.loads(FIXTURE.read_text("utf-8"))
        uuids = []
        for i in range(pipelines):
            config = json.loads(json.dumps(template))
            config["ai"] = {"runner": {"id": RUNNER, "expire-time": 0}, "runner_config": {RUNNER: {
                "model": {"primary": olds[i % old_models], "fallbacks": [], "reasoning": {}},
                "prompt": [{"role": "system", "content": f"You are real pipeline {i}."}],
                "knowledge-bases": []}}}
            uuids.append(call("POST", "/api/v1/pipelines",
                              {"name": f"Real pipeline {i}", "config": config})["uuid"])
        setup_s = time.perf_counter() - t0
        setup_requests = old_models + pipelines

        lines = ["version: 1", "platform: langbot", "settings:", "  prune: false", "models:"]
        for j in range(old_models):  # adopted by name: no change
            lines += [f"  - key: old{j}", f"    name: old-model-{j}", f"    base_url: {old_url}",
                      f"    api_keys: [\"${{{MODEL_KEY_ENV}}}\"]", "    extra_args: {temperature: 0.5}"]
        for j in range(new_models):
            lines += [f"  - key: new{j}", f"    name: new-model-{j}", f"    base_url: {new_url}",
                      f"    api_keys: [\"${{{NEW_KEY_ENV}}}\"]", "    abilities: [func_call]",
                      "    extra_args: {temperature: 0.7}"]
        lines.append("pipelines:")
        lines += [f"  - {{uuid: {u}, model: new{i % new_models}}}" for i, u in enumerate(uuids)]
        manifest = Path(tmp) / "langbot.yaml"
        manifest.write_text("\n".join(lines) + "\n", "utf-8")

        # the models' endpoints are addresses nothing serves: this measures the sync, so
        # apply's endpoint check (which would refuse them) is off, as in the test suite
        env = {"LANGBOT_API_URL": lb.url, "LANGBOT_API_KEY": lb.key, MODEL_KEY_ENV: MODEL_KEY,
               NEW_KEY_ENV: NEW_KEY, "CONVAI_SYNC_NO_ENDPOINT_CHECK": "1"}
        with environment(env):
            counter.take()
            plan1 = cli("plan", "-f", str(manifest), "--parallelism", str(parallelism))
            plan1_counts = counter.take()
            cpu0 = server_cpu(lb)
            apply = cli("apply", "-f", str(manifest), "--auto-approve",
                        "--parallelism", str(parallelism))
            apply_cpu = server_cpu(lb) - cpu0
            apply_counts = counter.take()
            executor = (timer.seconds, timer.requests, timer.phases())
            plan2 = cli("plan", "-f", str(manifest), "--parallelism", str(parallelism))
            plan2_counts = counter.take()
        live_models = call("GET", "/api/v1/provider/models/llm")["models"]
        live_pipes = call("GET", "/api/v1/pipelines")["pipelines"]
        providers = call("GET", "/api/v1/provider/providers")["providers"]

        # For comparison, not a target: the same 100 rebinds alone (the new models
        # exist now), at --parallelism 1 and then 10, each after moving every
        # pipeline back to its old model through the raw API.
        rebinds_only: list[tuple[int, int, float, int, float]] = []
        with environment(env):
            for p in (1, parallelism):
                for i, u in enumerate(uuids):
                    config = call("GET", f"/api/v1/pipelines/{u}")["pipeline"]["config"]
                    config["ai"]["runner_config"][RUNNER]["model"]["primary"] = olds[i % old_models]
                    call("PUT", f"/api/v1/pipelines/{u}", {"config": config})
                cpu0 = server_cpu(lb)
                again = cli("apply", "-f", str(manifest), "--auto-approve", "--parallelism", str(p))
                rebinds_only.append((p, again[0], timer.seconds, timer.requests,
                                     server_cpu(lb) - cpu0))
                counter.take()
        for text in (plan1[1], plan1[2], apply[1], apply[2], plan2[1], plan2[2]):
            for secret in (MODEL_KEY, NEW_KEY, lb.key):
                if secret in text:
                    raise SystemExit("--real: a key reached the output")
        new_uuids = {m["uuid"] for m in live_models if m["name"].startswith("new-model-")}
        on_new = sum(1 for p in live_pipes if p["config"]["ai"]["runner_config"][RUNNER]["model"]
                     ["primary"] in new_uuids)
        server_log = lb.log_tail(400)

    dupes = sum(1 for p in providers if p.get("base_url") == new_url)
    first = next((ln for ln in plan1[1].splitlines() if "to register" in ln), plan1[1][-200:])
    ok_apply = apply[0] == 0 and "The account now matches the manifest." in apply[1]
    ok_plan = plan2[0] == 0 and "No changes." in plan2[1]
    fmt = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"  # noqa: E731
    out += [
        f"Real LangBot 4.11.2 on 127.0.0.1 (SQLite, fresh workdir; started in {started:.1f} s); "
        f"convai-sync --parallelism {parallelism}, the CLI in-process.", "",
        f"Setup through LangBot's API (raw httpx, one at a time): {old_models} models + "
        f"{pipelines} pipelines, {setup_requests} POSTs in {setup_s:.2f} s "
        f"({setup_s / setup_requests * 1000:.1f} ms each).", "",
        "| command | exit | wall | requests (by method) | result |", "|---|---|---|---|---|",
        f"| plan (before) | {plan1[0]} | {plan1[3]:.2f} s | {sum(plan1_counts.values())} "
        f"({fmt(plan1_counts)}) | {first.strip()} |",
        f"| apply --auto-approve | {apply[0]} | {apply[3]:.2f} s | {sum(apply_counts.values())} "
        f"({fmt(apply_counts)}) | "
        f"{'The account now matches the manifest.' if ok_apply else 'DID NOT CONVERGE'} |",
        f"| plan (after) | {plan2[0]} | {plan2[3]:.2f} s | {sum(plan2_counts.values())} "
        f"({fmt(plan2_counts)}) | {'No changes.' if ok_plan else 'CHANGES LEFT'} |", "",
        f"Inside the apply: the executor (engine.apply_plan) took {executor[0]:.2f} s for "
        f"{executor[1]} requests ({executor[2]}); the rest is the plan read before it, "
        f"the verifying read after it, and the CLI. The LangBot process used {apply_cpu:.2f} s "
        f"of CPU during the whole apply command ({apply_cpu / sum(apply_counts.values()) * 1000:.1f} "
        "ms a request).", "",
        f"After: {len(live_models)} models ({len(new_uuids)} new), {on_new} of {len(live_pipes)} "
        f"pipelines on a new model, {len(providers)} provider objects (built-in included): "
        + "; ".join(f"{p['base_url']} with {p.get('llm_count')} models" for p in providers) + ".", "",
        *([f"Note: {dupes} provider objects hold the same new base_url and key: the "
           f"{new_models} registrations ran concurrently and LangBot's find-or-create of their "
           "shared inline provider (SELECT, then INSERT, no lock or unique key) raced.", ""]
          if dupes > 1 else []),
        "For comparison (not a target), the 100 rebinds alone (200 requests), after moving the "
        "pipelines back through the raw API: " + "; ".join(
            f"--parallelism {p}: exit {code}, executor {s:.2f} s for {n} requests "
            f"({s / n * 1000:.1f} ms a request; LangBot CPU {cpu:.2f} s for the whole command)"
            if n else f"--parallelism {p}: exit {code}"
            for p, code, s, n, cpu in rebinds_only) + ".", "",
        "Targets:",
        f"- {'met' if ok_apply else 'MISSED'}: one apply converges against the real server "
        f"(exit {apply[0]})",
        f"- {'met' if ok_plan else 'MISSED'}: the plan after it shows 0 changes (exit {plan2[0]})",
    ]
    if not (ok_apply and ok_plan):
        out += ["", "apply stdout:", apply[1][-3000:], "apply stderr:", apply[2][-3000:],
                "plan stdout:", plan2[1][-3000:], "server log:", server_log[-3000:]]
    return out


# --- report ---------------------------------------------------------------------------

def emulator_rows(args: argparse.Namespace) -> tuple[list[str], list[tuple[bool, str]]]:
    sizes = [100] if args.quick else [int(x) for x in args.sizes.split(",") if x.strip()]
    seq_sizes = [int(x) for x in args.sequential_sizes.split(",") if x.strip()]
    host = EmulatorHost(_serve)
    runs: list[Run] = []
    sequential: dict[int, Run] = {}
    try:
        for n in sizes:
            runs.append(run(host, n, MODELS_FOR.get(n, max(1, n // 33)), args.parallelism,
                            args.latency_ms))
            print(f"  measured {n:,} pipelines at p={args.parallelism}", file=sys.stderr, flush=True)
        for n in seq_sizes:
            if n in sizes or not args.quick:
                sequential[n] = run(host, n, MODELS_FOR.get(n, max(1, n // 33)), 1, args.latency_ms)
                print(f"  measured {n:,} pipelines at p=1", file=sys.stderr, flush=True)
    finally:
        host.close()
    per_request = None
    if sequential:
        largest = sequential[max(sequential)]
        per_request = largest.apply_s / largest.apply_requests
    lines = [f"Emulator latency {args.latency_ms:g} ms per request, in its own process; "
             f"convai-sync --parallelism {args.parallelism}.", "",
             "| pipelines / models | changes | requests plan / apply | plan | apply "
             f"(p={args.parallelism}) | round-trip bound | apply / bound | sequential (p=1) | "
             "apply / sequential | client CPU | emulator CPU | connections |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    targets: list[tuple[bool, str]] = [(all(r.plan_requests == 2 for r in runs),
                                        "plan reads 2 requests at every size")]
    for r in runs:
        if r.pipelines in sequential:
            seq, seq_text = sequential[r.pipelines].apply_s, f"{sequential[r.pipelines].apply_s:.3f} s"
        elif per_request is not None:
            seq = per_request * r.apply_requests
            seq_text = f"{seq:.1f} s (extrapolated)"
        else:
            seq, seq_text = float("nan"), "n/a"
        lines.append(
            f"| {r.pipelines:,} / {r.models} | {r.changes:,} | {r.plan_requests} / "
            f"{r.apply_requests:,} | {r.plan_s:.3f} s | {r.apply_s:.3f} s | {r.bound_s:.3f} s | "
            f"{r.apply_s / r.bound_s:.2f}x | {seq_text} | "
            f"{'n/a' if math.isnan(seq) else f'{r.apply_s / seq:.3f}x'} | {r.client_cpu_s:.2f} s | "
            f"{r.emulator_cpu_s:.2f} s | {r.connections} |")
    lines += ["", "By phase (requests, wall time, its bound, ratio):", ""]
    for r in runs:
        parts = [f"{name} {n:,} req {s:.3f} s / {b:.3f} s ({s / b:.2f}x)" if b else
                 f"{name} {n} req {s:.3f} s" for name, n, s, b in r.phases]
        lines.append(f"- {r.pipelines:,} pipelines: " + "; ".join(parts))
    if sequential:
        lines += ["", "Sequential (p=1), measured: " + "; ".join(
            f"{n:,} pipelines {s.apply_requests:,} requests in {s.apply_s:.3f} s "
            f"({s.apply_s / s.apply_requests * 1000:.1f} ms a request, bound {s.bound_s:.3f} s)"
            for n, s in sorted(sequential.items()))]
    for r in runs:
        if r.pipelines >= 1000:
            targets.append((r.apply_s <= 1.3 * r.bound_s,
                            f"apply of {r.pipelines:,} pipeline repoints (+{UPDATED} model updates) "
                            f"within 1.3x the round-trip bound ({r.apply_s / r.bound_s:.2f}x)"))
    return lines, targets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 pipelines only")
    ap.add_argument("--real", action="store_true", help="only the run against a real LangBot server")
    ap.add_argument("--sizes", default="100,1000", help="pipeline counts [100,1000]")
    ap.add_argument("--sequential-sizes", default="100", help="sizes at which --parallelism 1 is "
                    "measured; others are extrapolated from the largest of these [100]")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request")
    ap.add_argument("--parallelism", type=int, default=10, help="convai-sync --parallelism")
    ap.add_argument("--profile", action="store_true", help="only: where the client's time goes "
                    "in the 1,000-pipeline apply, and the apply with a cheaper rebound() check")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    args = ap.parse_args(argv)

    out = [f"Machine: {machine()}", ""]
    print("\n".join(out), flush=True)
    if args.profile:
        lines, targets = profile(args), []
    elif args.real:
        lines = real_run(pipelines=100, old_models=10, new_models=10, parallelism=args.parallelism)
        targets = []
    else:
        lines, targets = emulator_rows(args)
    if targets:
        lines += ["", "Targets:", *[f"- {'met' if ok else 'MISSED'}: {what}" for ok, what in targets]]
    print("\n".join(lines), flush=True)
    out += lines
    if args.markdown:
        Path(args.markdown).write_text("\n".join(out) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
