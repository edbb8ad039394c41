"""Benchmark (endpoint checks): `check` of 50 endpoints that each take 200 ms a
request, against the concurrent bound and a one-at-a-time checker, in one run.

    python bench/bench_check.py                      # 50 endpoints, 200 ms, 3 runs
    python bench/bench_check.py --endpoints 200 --latency-ms 100

- check: what `convai-sync check` does after its account read: the manifest's
  endpoints (Platform.endpoints), then check_endpoints over real HTTP. Each
  endpoint is 2 requests (GET /models, a one-token POST /chat/completions), so
  one endpoint takes 2 x latency.
- concurrent bound: 2 x latency: every endpoint at once, zero overhead.
- one at a time: endpoints x 2 x latency, computed (not slept).

The OpenAI-compatible stub (convai_sync/emulator/openai_stub.py) runs in its
own process so its CPU does not compete with the checker's for one interpreter
lock. Each endpoint has its own URL path, in the stub's slow mode. Results:
RESULTS.md ("Endpoint checks").
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convai_sync.endpoint_check import CheckSettings, Health, check_endpoints  # noqa: E402
from convai_sync.manifest import load_manifest, resolve_secrets  # noqa: E402

KEY_VAR, KEY = "BENCH_ENDPOINT_KEY", "sk-bench-endpoint-key"
TARGET_S = 2.0


def _serve(latency_ms: float, conn: "multiprocessing.connection.Connection") -> None:
    from convai_sync.emulator.openai_stub import OpenAIStub
    stub = OpenAIStub(keys={KEY}, slow_ms=latency_ms)
    conn.send(stub.start())
    conn.recv()  # until the parent is done
    stub.stop()


def manifest(url: str, n: int, folder: Path) -> Path:
    lines = ["version: 1", "models:"]
    for i in range(n):
        lines += [f"  - model_group_name: bench-{i}", f"    model_name: model-{i}",
                  f"    base_url: {url}/slow/endpoint-{i}/v1", f"    api_key: ${{{KEY_VAR}}}"]
    path = folder / "bench-check.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_run(path: Path) -> float:
    loaded = load_manifest(str(path))
    keys = resolve_secrets(loaded, {KEY_VAR: KEY}).keys
    started = time.perf_counter()
    results = check_endpoints(loaded.platform.endpoints(loaded.desired), keys,
                              CheckSettings(slow=60.0))
    elapsed = time.perf_counter() - started
    bad = [r for r in results if r.health is not Health.OK]
    if bad:
        raise SystemExit(f"not every endpoint answered: {bad[0].line()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_serve, args=(args.latency_ms, child), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        with tempfile.TemporaryDirectory() as folder:
            path = manifest(url, args.endpoints, Path(folder))
            times = [one_run(path) for _ in range(args.runs)]
    finally:
        parent.send("stop")
        proc.join(timeout=5)
    bound = 2 * args.latency_ms / 1000
    serial = args.endpoints * bound
    median = statistics.median(times)
    print(f"| endpoints | latency per request | check (median of {args.runs}) | runs | "
          "concurrent bound | one at a time | check / bound |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.endpoints} | {args.latency_ms:.0f} ms | {median:.3f} s | "
          f"{', '.join(f'{t:.3f}' for t in times)} s | {bound:.3f} s | {serial:.1f} s | "
          f"{median / bound:.2f}x |")
    verdict = "met" if max(times) < TARGET_S else "MISSED"
    print(f"\n- {verdict}: {args.endpoints} endpoints checked in well under {TARGET_S:g} s "
          f"(slowest run {max(times):.3f} s)")


if __name__ == "__main__":
    main()
