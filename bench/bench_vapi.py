"""Benchmark (Vapi): 300 assistant rebinds against the Vapi emulator with
injected latency, next to the round-trip bound and to a sequential client paced
at 700 ms a request (Vapi's own GitOps tool: REQUEST_DELAY_MS = 700, one request
at a time; see /work/shared/VAPI_API.md), in one run.

    python bench/bench_vapi.py                    # 300 rebinds, 20 ms, --parallelism 10
    python bench/bench_vapi.py --assistants 100 --latency-ms 5
    python bench/bench_vapi.py --markdown bench/RESULTS.vapi.md

- convai-sync: plan (read + diff) and apply (execute) through the real client.
  Each rebind is 2 requests: GET the assistant, then PATCH its whole model
  object back (a partial one would drop the prompt), so 300 rebinds are 600.
- round-trip bound: ceil(rebinds / parallelism) x 2 round trips x latency, i.e.
  requests / parallelism x latency: an apply with zero overhead.
- paced sequential: 700 ms x the same requests, computed (not slept: that would
  be 7 minutes). The 700 ms gap dwarfs the 20 ms round trip, so this is what
  such a client takes whatever the latency.
- plan of 1,000 assistants: the requests and wall time of one read + diff (a
  list of exactly 1,000 may be cut, so it is confirmed from the paged list).

The emulator runs in its own process so that its CPU does not compete with the
client's for one interpreter lock. Results: RESULTS.md ("Vapi").
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host import EmulatorHost, serve  # noqa: E402  (bench/ is the script's own folder)

from convai_sync.executor import execute  # noqa: E402
from convai_sync.manifest import load_manifest, resolve_secrets  # noqa: E402
from convai_sync.planner import Brakes, build_plan  # noqa: E402
from convai_sync.providers.vapi import VapiClient  # noqa: E402

KEY = "bench-vapi-account-key"
PACED_S = 0.7  # Vapi's GitOps tool: a fixed 700 ms between requests, strictly sequential
BRAKES = Brakes(allow_empty=True, allow_deregister=True)
OLD = {"provider": "custom-llm", "url": "https://old-gateway.example/v1", "model": "m-old"}


# --- the emulator, in a child process ---------------------------------------------------

def _serve(conn: Any) -> None:
    from convai_sync.providers.vapi.emulator import VapiEmulator
    serve(conn, VapiEmulator(api_key=KEY))


# --- the account ----------------------------------------------------------------------

def aid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def account(assistants: int) -> tuple[dict, str]:
    """A seed with every assistant on gw-old, and a manifest moving all to gw-new."""
    seed = {"credentials": [{"name": "gw-old", "apiKey": "k1"}, {"name": "gw-new", "apiKey": "k2"}],
            "assistants": [{"id": aid(i), "name": f"Assistant {i}", "credentialIds": ["gw-old"],
                            "model": {**OLD, "temperature": 0.5, "maxTokens": 300, "messages": [
                                {"role": "system", "content": f"You are assistant {i}."}],
                                "tools": [{"type": "endCall"}]}} for i in range(assistants)]}
    lines = ["version: 1", "platform: vapi", "models:"]
    for name, url in (("gw-old", OLD["url"]), ("gw-new", "https://new-gateway.example/v1")):
        lines += [f"  - name: {name}", f"    url: {url}", "    model: m-new" if name == "gw-new"
                  else "    model: m-old", f"    api_key: ${{BENCH_{name.upper().replace('-', '_')}}}"]
    lines.append("assistants:")
    lines += [f"  - {{id: {aid(i)}, model: gw-new}}" for i in range(assistants)]
    return seed, "\n".join(lines) + "\n"


# --- measurements ---------------------------------------------------------------------

def rebinds(host: EmulatorHost, n: int, latency_ms: float, parallelism: int) -> dict[str, Any]:
    seed, text = account(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vapi.yaml"
        path.write_text(text, "utf-8")
        loaded = load_manifest(path)
    keys = resolve_secrets(loaded, environ={}, placeholder="bench-model-key").keys
    host.ask("reset", (seed, latency_ms))
    with VapiClient(host.url, KEY, parallelism=parallelism) as client:
        t0 = time.perf_counter()
        live = client.read_state("vapi", loaded.desired, {})
        plan = build_plan(loaded, live, BRAKES)
        plan_s = time.perf_counter() - t0
        before = client.requests
        t0 = time.perf_counter()
        report = execute(plan, client, keys, parallelism=parallelism)
        apply_s = time.perf_counter() - t0
        apply_requests = client.requests - before
        if not report.ok:
            raise SystemExit(f"apply failed: {report.to_json()}")
        if not build_plan(loaded, client.read_state("vapi", loaded.desired, {}), BRAKES).empty:
            raise SystemExit("apply did not converge")
    stats = host.ask("stats")
    if stats["orphans"]:
        raise SystemExit(f"{stats['orphans']} assistants were orphaned")
    changes = len(plan.changes)
    bound = math.ceil(changes / parallelism) * 2 * latency_ms / 1000
    return {"changes": changes, "plan_requests": live.requests, "plan_s": plan_s,
            "apply_requests": apply_requests, "writes": stats["writes"], "apply_s": apply_s,
            "bound_s": bound, "paced_s": PACED_S * apply_requests}


def big_plan(host: EmulatorHost, n: int, latency_ms: float) -> tuple[int, float]:
    seed, text = account(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vapi.yaml"
        path.write_text(text, "utf-8")
        loaded = load_manifest(path)
    host.ask("reset", (seed, latency_ms))
    with VapiClient(host.url, KEY) as client:
        t0 = time.perf_counter()
        live = client.read_state("vapi", loaded.desired, {})
        build_plan(loaded, live, BRAKES)
        wall = time.perf_counter() - t0
    assert len(live.consumers) == n
    return live.requests, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assistants", type=int, default=300, help="assistants to rebind")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request")
    ap.add_argument("--parallelism", type=int, default=10, help="convai-sync --parallelism")
    ap.add_argument("--plan-size", type=int, default=1000, help="assistants in the plan check")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    args = ap.parse_args(argv)

    host = EmulatorHost(_serve)
    try:
        r = rebinds(host, args.assistants, args.latency_ms, args.parallelism)
        plan_requests, plan_wall = big_plan(host, args.plan_size, args.latency_ms)
    finally:
        host.close()
    lines = [
        f"Vapi emulator latency {args.latency_ms:g} ms per request, in its own process; "
        f"convai-sync --parallelism {args.parallelism}.", "",
        "| assistants rebound | requests plan / apply (writes) | plan | apply | round-trip bound "
        "| paced sequential (700 ms x requests) | apply / bound | paced / apply |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['changes']:,} | {r['plan_requests']} / {r['apply_requests']:,} ({r['writes']:,}) | "
        f"{r['plan_s']:.3f} s | {r['apply_s']:.3f} s | {r['bound_s']:.3f} s | "
        f"{r['paced_s']:.1f} s | {r['apply_s'] / r['bound_s']:.2f}x | "
        f"{r['paced_s'] / r['apply_s']:.0f}x |", "",
        f"Plan of {args.plan_size:,} assistants (read + diff, {args.latency_ms:g} ms): "
        f"{plan_requests} requests, {plan_wall:.3f} s wall.", "", "Targets:"]
    for ok, what in ((r["apply_s"] <= 1.3 * r["bound_s"],
                      f"{r['changes']} rebinds within 1.3x the round-trip bound "
                      f"({r['apply_s'] / r['bound_s']:.2f}x)"),
                     (r["paced_s"] >= 20 * r["apply_s"],
                      f"at least 20x faster than 700 ms pacing ({r['paced_s'] / r['apply_s']:.0f}x)"),
                     (plan_requests <= 3, f"plan of {args.plan_size:,} assistants in at most 3 "
                                          f"requests ({plan_requests})")):
        lines.append(f"- {'met' if ok else 'MISSED'}: {what}")
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
