"""Runs the workflows a user copies, job by job, as GitHub would as far as a
test can, against emulators and a stub of the GitHub API:

- expressions (`${{ matrix.environment }}`, `secrets.X`, `vars.X`,
  `toJSON(secrets)`, `==`, `&&`, `||`, `!`) are evaluated;
- a job's `environment:` picks that GitHub environment's secrets and variables;
- `actions/checkout` clones the repository at the event's commit;
- the convai-sync action runs its own steps from action.yml: every `run:` script
  with bash, with GITHUB_OUTPUT / GITHUB_ENV / GITHUB_STEP_SUMMARY files; the
  `uses:` steps inside it are stood in for (setup-python gives a Python that
  runs this test's interpreter and records `pip install`; upload-artifact
  records what it would upload).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
_EXPR = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


@dataclass
class Environment:
    """A GitHub environment: its secrets and variables."""

    secrets: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)


@dataclass
class JobRun:
    job: str
    environment: str
    ok: bool
    outputs: dict[str, str]
    summary: str
    log: str
    workdir: Path
    artifacts: list[str]
    pip_installs: list[str]


class Ctx(dict):
    """An expression context: attribute access, '' for what is not there."""

    def __getattr__(self, name: str) -> Any:
        return self[name]

    def __getitem__(self, name: str) -> Any:
        value = self.get(name, "")
        return Ctx(value) if isinstance(value, dict) else value


def evaluate(expression: str, ctx: dict[str, Any]) -> Any:
    python = re.sub(r"!(?!=)", " not ", expression).replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"\.(\w+(?:-\w+)+)", lambda m: f"[{m[1]!r}]", python)  # outputs.plan-file
    names = {k: Ctx(v) if isinstance(v, dict) else v for k, v in ctx.items()}
    names.update(toJSON=lambda v: json.dumps(dict(v)), cancelled=lambda: False, always=lambda: True,
                 success=lambda: True)
    return eval(python, {"__builtins__": {}}, names)  # noqa: S307 (test-only, our own files)


def render(value: Any, ctx: dict[str, Any]) -> Any:
    if not isinstance(value, str):
        return value
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return evaluate(whole[1], ctx)
    return _EXPR.sub(lambda m: str(evaluate(m[1], ctx)), value)


def condition(value: Any, ctx: dict[str, Any]) -> bool:
    if value is None:
        return True
    text = value if isinstance(value, str) else str(value)
    inner = _EXPR.fullmatch(text.strip())
    return bool(evaluate(inner[1] if inner else text, ctx))


class WorkflowRunner:
    def __init__(self, origin: Path, tmp: Path, github: Any, environments: dict[str, Environment],
                 action_ref: str) -> None:
        self.origin, self.tmp, self.github = origin, tmp, github
        self.environments, self.action_ref = environments, action_ref
        self.runs = 0

    def run(self, workflow: Path, event_name: str, event: dict[str, Any], sha: str,
            ref_name: str = "main") -> list[JobRun]:
        wf = yaml.safe_load(workflow.read_text())
        results: dict[str, list[JobRun]] = {}
        for job_id, job in wf["jobs"].items():
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if any(not results.get(n) or not all(r.ok for r in results[n]) for n in needs):
                results[job_id] = []
                continue
            results[job_id] = [r for combo in _matrix(job)
                               if (r := self._job(job_id, job, combo, event_name, event, sha, ref_name))]
        return [r for runs in results.values() for r in runs]

    def _job(self, job_id: str, job: dict[str, Any], matrix: dict[str, Any], event_name: str,
             event: dict[str, Any], sha: str, ref_name: str) -> JobRun | None:
        github = {"event_name": event_name, "event": event, "sha": sha, "ref_name": ref_name,
                  "repository": self.github.repo, "token": self.github.token}
        ctx: dict[str, Any] = {"github": github, "matrix": matrix}
        env_name = render(job.get("environment", ""), ctx)
        environment = self.environments.get(env_name, Environment())
        ctx.update(secrets=environment.secrets, vars=environment.vars)
        if not condition(job.get("if"), ctx):
            return None
        self.runs += 1
        workdir = self.tmp / f"run{self.runs}-{job_id}-{env_name or 'none'}"
        temp = workdir.with_name(workdir.name + "-temp")
        temp.mkdir(parents=True)
        event_file = temp / "event.json"
        event_file.write_text(json.dumps(event))
        # the example manifests point at endpoints that do not exist: apply's endpoint
        # check is off here as in the rest of the suite (conftest.py)
        job_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(temp)), "LANG": "C.UTF-8",
                   "CONVAI_SYNC_NO_ENDPOINT_CHECK": "1",
                   "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(workdir), "GITHUB_API_URL": self.github.url,
                   "GITHUB_SERVER_URL": "https://github.test", "GITHUB_REPOSITORY": self.github.repo,
                   "GITHUB_RUN_ID": str(self.runs), "GITHUB_EVENT_NAME": event_name,
                   "GITHUB_EVENT_PATH": str(event_file), "GITHUB_SHA": sha, "GITHUB_REF_NAME": ref_name}
        step_run = _StepRun(workdir, temp, job_env)
        ok = True
        outputs: dict[str, str] = {}
        for step in job["steps"]:
            uses = step.get("uses", "")
            if uses.startswith("actions/checkout@"):
                _git("clone", "-q", str(self.origin), str(workdir))
                _git("-C", str(workdir), "checkout", "-q", "-B", ref_name, sha)
            elif uses == self.action_ref:
                inputs = {k: str(render(v, ctx)) for k, v in (step.get("with") or {}).items()}
                caller_env = {k: str(render(v, ctx)) for k, v in (step.get("env") or {}).items()}
                ok, outputs = step_run.action(inputs, caller_env, github)
            else:
                raise AssertionError(f"the workflow runs a step this test cannot stand in for: {step}")
            if not ok:
                break
        return JobRun(job_id, env_name, ok, outputs, step_run.summary, step_run.log, workdir,
                      step_run.artifacts, step_run.installs())


class _StepRun:
    """The action's steps (action.yml) inside one job."""

    def __init__(self, workdir: Path, temp: Path, job_env: dict[str, str]) -> None:
        self.workdir, self.temp, self.job_env = workdir, temp, job_env
        self.exported: dict[str, str] = {}
        self.summary, self.log = "", ""
        self.artifacts: list[str] = []

    def action(self, given: dict[str, str], caller_env: dict[str, str],
               github: dict[str, Any]) -> tuple[bool, dict[str, str]]:
        meta = yaml.safe_load((ROOT / "action.yml").read_text())
        unknown = set(given) - set(meta["inputs"])
        assert not unknown, f"inputs the action does not have: {unknown}"
        ctx: dict[str, Any] = {"github": {**github, "action_path": str(ROOT)}, "steps": {}}
        ctx["inputs"] = {name: given.get(name, render(spec.get("default", ""), ctx))
                         for name, spec in meta["inputs"].items()}
        for name, spec in meta["inputs"].items():
            assert not spec.get("required") or ctx["inputs"][name], f"required input {name} missing"
        for step in meta["runs"]["steps"]:
            outputs: dict[str, str] = {}
            if not condition(step.get("if"), ctx):
                continue
            if step.get("uses", "").startswith("actions/setup-python@"):
                outputs = {"python-path": str(self._fake_python())}
            elif step.get("uses", "").startswith("actions/upload-artifact@"):
                self.artifacts += [p for p in render(step["with"]["path"], ctx).split() if p]
            else:
                code, outputs = self._run(step, ctx, caller_env)
                if code != 0:
                    return False, self._action_outputs(meta, ctx, step, outputs)
            if step.get("id"):
                ctx["steps"][step["id"]] = {"outputs": outputs}
        return True, self._action_outputs(meta, ctx)

    def _action_outputs(self, meta: dict[str, Any], ctx: dict[str, Any], failed: Any = None,
                        partial: dict[str, str] | None = None) -> dict[str, str]:
        if failed is not None and failed.get("id"):
            ctx["steps"][failed["id"]] = {"outputs": partial or {}}
        return {name: str(render(spec["value"], ctx) or "") for name, spec in meta["outputs"].items()}

    def _run(self, step: dict[str, Any], ctx: dict[str, Any], caller_env: dict[str, str]) -> tuple[int, dict[str, str]]:
        assert step.get("shell") == "bash", step
        files = {n: self.temp / f"{n.lower()}-{len(self.log)}" for n in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV")}
        for f in files.values():
            f.write_text("")
        step_env = {k: str(render(v, ctx)) for k, v in (step.get("env") or {}).items()}
        env = {**self.job_env, **caller_env, **self.exported, **step_env,
               **{k: str(v) for k, v in files.items()}, "GITHUB_ACTION_PATH": str(ROOT)}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=self.workdir, env=env, capture_output=True, text=True, timeout=300)
        self.log += done.stdout + done.stderr
        self.summary += files["GITHUB_STEP_SUMMARY"].read_text()
        self.exported.update(_key_values(files["GITHUB_ENV"].read_text()))
        return done.returncode, _key_values(files["GITHUB_OUTPUT"].read_text())

    def _fake_python(self) -> Path:
        """setup-python's python: `-m venv DIR` makes DIR/bin/python, which is this
        test's interpreter except that `-m pip install` is recorded, not run."""
        log = self.temp / "pip.log"
        venv_python = (f"#!{sys.executable}\nimport os, sys\n"
                       f"if sys.argv[1:3] == ['-m', 'pip']:\n"
                       f"    open({str(log)!r}, 'a').write(' '.join(sys.argv[3:]) + '\\n'); sys.exit(0)\n"
                       f"os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])\n")
        shim = self.temp / "python3"
        shim.write_text(f"#!{sys.executable}\nimport os, sys\n"
                        f"assert sys.argv[1:3] == ['-m', 'venv'], sys.argv\n"
                        f"os.makedirs(sys.argv[3] + '/bin', exist_ok=True)\n"
                        f"open(sys.argv[3] + '/bin/python', 'w').write({venv_python!r})\n"
                        f"os.chmod(sys.argv[3] + '/bin/python', 0o755)\n")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
        return shim

    def installs(self) -> list[str]:
        log = self.temp / "pip.log"
        return log.read_text().splitlines() if log.exists() else []


def _key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _matrix(job: dict[str, Any]) -> list[dict[str, Any]]:
    axes = ((job.get("strategy") or {}).get("matrix") or {})
    if not axes:
        return [{}]
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True, text=True)
