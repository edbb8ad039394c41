"""Mutation testing of the core with mutmut: does the suite notice a broken behaviour?

    pip install -e '.[test,mutation]'
    python bench/mutation.py                      # every core module (long: see MUTATION.md)
    python bench/mutation.py retry providers/http # some modules
    python bench/mutation.py --report-only        # rebuild MUTATION.md from earlier runs

Not part of CI: one module takes minutes. Each module runs in its own scratch copy
of the repository (build/mutation/<module>/), with only the test files that
exercise it, so a run stays focused and a module can be re-run alone. mutmut
flips one operator, constant or call at a time; a mutant is *killed* when a test
goes red, *survived* when every test stays green. A survivor is either a missing
test (write it) or equivalent (behaves the same as the original: explained in
bench/mutation_equivalent.json, keyed by mutant name, and left out of the score).

Prints killed / survived / timeout per module and writes bench/MUTATION.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
EQUIVALENT = ROOT / "bench" / "mutation_equivalent.json"
REPORT = ROOT / "bench" / "MUTATION.md"
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-n", "0"]  # mutmut runs tests in-process

# module (under convai_sync/) -> the test files that exercise it
CORE: dict[str, list[str]] = {
    # the properties are left out here: 10 s for each surviving mutant is more than this
    # shared machine can give 566 mutants; they run in the normal suite
    "planner": ["test_planner.py", "test_scope.py", "test_saved_plans.py",
                "test_rotation_and_brakes.py"],
    "plan": ["test_plan.py", "test_planner.py", "test_markdown.py", "test_saved_plans.py"],
    "executor": ["test_executor.py", "test_planner.py", "test_faults.py"],  # test_interrupt times signals: not under mutmut
    "secrets": ["test_secrets.py", "test_scrub_cuts.py", "test_secret_forms.py",
                "test_lost_replies.py", "test_secrets_canary.py"],
    "retry": ["test_retry.py", "test_lost_replies.py"],
    "providers/http": ["test_http_session.py", "test_lost_replies.py", "test_http_edges.py"],
    "fingerprint": ["test_fingerprint.py", "test_saved_plans.py"],
    "state": ["test_state.py", "test_state_writes.py", "test_planner.py",
              "test_rotation_and_brakes.py"],
    # each client's own tests over HTTP against its emulator (a few seconds a file); the
    # end-to-end files (test_e2e.py, test_langbot.py, test_vapi.py, the properties) took
    # 10-60 s a mutant
    "providers/convai/client": ["test_convai_client.py"],
    "providers/langbot/client": ["test_langbot_client.py"],
    "providers/vapi/client": ["test_vapi_client.py"],
    "providers/vapi/reads": ["test_vapi_reads.py", "test_vapi_client.py"],
    "providers/vapi/assistants": ["test_vapi_client.py"],
    "providers/vapi/baseline": ["test_vapi_client.py"],
}
KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timeout", "no tests"
NOT_CHECKED = "not checked"


@dataclass
class ModuleResult:
    module: str
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True

    @property
    def score(self) -> float:
        # mutants a time-boxed run never reached are not part of the score (the row says so)
        scored = sum(n for k, n in self.counts.items() if k != NOT_CHECKED) - len(self.equivalent)
        return 100.0 * self.counts.get(KILLED, 0) / scored if scored else 100.0


def scratch_copy(module: str) -> Path:
    """A copy of the repository with a [tool.mutmut] section for this module only."""
    work = WORK / module.replace("/", ".")
    shutil.rmtree(work, ignore_errors=True)
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".hypothesis",
                                    ".pytest_cache", "mutants", "*.egg-info")
    shutil.copytree(ROOT, work, ignore=ignore)
    tests = [f"tests/{t}" for t in CORE[module] if (ROOT / "tests" / t).exists()]
    section = {
        "source_paths": ["convai_sync"],
        "only_mutate": [f"convai_sync/{module}.py"],
        "pytest_add_cli_args": PYTEST_ARGS,
        "pytest_add_cli_args_test_selection": tests,
        "also_copy": ["examples", "schema", "README.md", "bench"],
        "use_git_change_detection": False,
        "timeout_multiplier": 5.0,
        "timeout_constant": 10.0,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    with open(work / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return work


def run_module(module: str, children: int, budget: float) -> ModuleResult:
    work = scratch_copy(module)
    env = {**os.environ, "LANGBOT_VENV": "/nonexistent", "CI": "1"}
    started = time.monotonic()
    log = open(work / "mutmut.log", "w", encoding="utf-8")
    proc = subprocess.Popen(["nice", "-n", "10", "mutmut", "run", "--max-children", str(children)],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=budget)
        complete = proc.returncode == 0
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()
        complete = False
    result = collect(module, work)
    result.seconds, result.complete = time.monotonic() - started, complete
    return result


def collect(module: str, work: Path) -> ModuleResult:
    """Read mutmut's verdicts for the module from its scratch copy."""
    from mutmut.stats import status_by_exit_code

    result = ModuleResult(module)
    meta = work / "mutants" / "convai_sync" / f"{module}.py.meta"
    if not meta.exists():
        result.complete = False
        return result
    codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    equivalent = load_equivalent()
    for name, code in sorted(codes.items()):
        status = status_by_exit_code[code]
        status = {"segfault": TIMEOUT}.get(status, status)
        result.counts[status] = result.counts.get(status, 0) + 1
        if status not in (KILLED, TIMEOUT, NOT_CHECKED):
            (result.equivalent if name in equivalent else result.survivors).append(name)
    result.complete = NOT_CHECKED not in result.counts  # a time-boxed run that stopped early
    # a timeout is a kill: the mutant made the tests hang, which they noticed
    result.counts[KILLED] = result.counts.get(KILLED, 0) + result.counts.pop(TIMEOUT, 0)
    result.counts.setdefault(KILLED, 0)
    return result


def load_equivalent() -> dict[str, str]:
    return json.loads(EQUIVALENT.read_text("utf-8")) if EQUIVALENT.exists() else {}


def mutant_diff(module: str, name: str) -> str:
    work = WORK / module.replace("/", ".")
    out = subprocess.run(["mutmut", "show", name], cwd=work, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("+", "-"))
             and not ln.startswith(("+++", "---"))]
    return " / ".join(ln.strip() for ln in lines)[:300]


def machine() -> str:
    import mutmut
    from host import machine as described  # the benchmarks' wording of the machine
    return f"{described()}, shared with other engineers; mutmut {mutmut.__version__}"


def print_row(r: ModuleResult) -> None:
    c = r.counts
    print(f"{r.module:28} killed {c.get(KILLED, 0):4}  survived {c.get(SURVIVED, 0):4}  "
          f"no tests {c.get(NO_TESTS, 0):3}  not reached {c.get(NOT_CHECKED, 0):3}  "
          f"equivalent {len(r.equivalent):3}  "
          f"score {r.score:5.1f}%{'' if r.complete else '  (incomplete)'}  {r.seconds:.0f} s",
          flush=True)


def write_report(results: list[ModuleResult]) -> None:
    equivalent = load_equivalent()
    rows = ["| module | mutants | killed (incl. timeouts) | survived | no tests | not reached "
            "| equivalent | score (non-equivalent killed) | complete |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.counts
        rows.append(f"| {r.module} | {sum(c.values())} | {c.get(KILLED, 0)} | "
                    f"{c.get(SURVIVED, 0)} | {c.get(NO_TESTS, 0)} | {c.get(NOT_CHECKED, 0)} | "
                    f"{len(r.equivalent)} | {r.score:.1f}% | {'yes' if r.complete else 'no'} |")
    survivors = [f"- `{n}`: `{mutant_diff(r.module, n)}`" for r in results for n in r.survivors]
    # the diff beside each reason, so a reader can check it (and a renumbered mutant shows)
    equivalents = [f"- `{n}`: `{mutant_diff(r.module, n)}`: {equivalent[n]}"
                   for r in results for n in r.equivalent]
    head = REPORT.read_text("utf-8").split("<!-- generated -->")[0] if REPORT.exists() else ""
    REPORT.write_text(head + "<!-- generated -->\n\n"
                      f"Machine: {machine()}\n\n"
                      f"Command: `python bench/mutation.py {' '.join(r.module for r in results)}`"
                      f" (mutmut, per module, pytest {' '.join(PYTEST_ARGS)} on the module's "
                      "test files, LANGBOT_VENV=/nonexistent)\n\n"
                      + "\n".join(rows) + "\n\n## Surviving mutants\n\n"
                      + ("\n".join(survivors) or "None.") + "\n\n## Equivalent mutants\n\n"
                      + ("\n".join(equivalents) or "None.") + "\n", "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(CORE)}")
    parser.add_argument("--children", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--budget", type=float, default=1800, help="seconds per module")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild MUTATION.md from the scratch copies of earlier runs")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in CORE]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(CORE)}")
    if shutil.which("mutmut") is None:
        parser.error("mutmut is not installed: pip install -e '.[test,mutation]'")
    results = []
    for module in args.modules or list(CORE):
        if args.report_only:
            result = collect(module, WORK / module.replace("/", "."))
        else:
            result = run_module(module, args.children, args.budget)
        print_row(result)
        results.append(result)
    write_report(results)
    print(f"wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)
    weak = [r.module for r in results if r.score < 90 or not r.complete]
    return 1 if weak else 0


if __name__ == "__main__":
    sys.exit(main())
