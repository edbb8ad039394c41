"""plan / apply / drift / validate as the action runs them: convai-sync's CLI
(the same exit codes and output a user sees), then GitHub (comment, issue,
summary, outputs). Exit 1 fails the step; changes (exit 2) do not."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..cli import run_captured
from ..saved_plan import review_fingerprint
from ..state import default_path
from . import comments
from .github_api import GitHubError
from .job import InputError, Job, annotate
from .state_push import PushError, push_state

DRIFT_LABEL = "convai-sync-drift"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Checked:
    """validate --format json, and what follows from it."""

    report: dict[str, Any]
    environment: str
    key_var: str | None          # the account key's variable (None: the manifest is invalid)
    has_key: bool


def main() -> None:
    try:
        job = Job.from_env()
    except InputError as e:
        annotate("error", f"convai-sync action: {e}")
        sys.exit(1)
    for name in ("INPUT_SECRETS", "INPUT_GITHUB_TOKEN"):
        os.environ.pop(name, None)  # read once; nothing started later (git) inherits them
    code = COMMANDS[job.command](job)
    job.set_output("exit-code", str(code))
    sys.exit(1 if code == 1 else 0)


def cli(*args: str) -> Ran:
    """convai-sync, in this process (the action's process is its own: one
    interpreter start per step, not per command), exactly as the console script."""
    code, out, err = run_captured(list(args))
    sys.stderr.write(err)  # logs and progress belong in the job log
    return Ran(code, out, err)


def _export(job: Job, names: set[str]) -> None:
    """From `secrets`, only what convai-sync reads (the account's variables and the
    manifest's ${VAR}s) goes into the environment; what the caller set wins."""
    for name in names:
        if not os.environ.get(name) and job.secrets.get(name):
            os.environ[name] = job.secrets[name]


def check(job: Job) -> Checked:
    """Validate the manifest (annotating each problem at its FILE:LINE)."""
    ran = cli("validate", "-f", job.manifest, "--format", "json")
    try:
        report = json.loads(ran.stdout)
    except ValueError:
        report = {"valid": False, "manifest": job.manifest,
                  "problems": [{"file": job.manifest, "line": None, "message": ran.stderr.strip()}]}
    environment = job.environment or report.get("environment") or Path(job.manifest).stem
    job.set_output("environment", environment)
    for p in report["problems"]:
        annotate("error", p["message"], p["file"], p["line"])
    if not report["valid"]:
        return Checked(report, environment, None, False)
    key_var = report["account_env"]["key"]
    _export(job, {key_var, report["account_env"]["url"], *report["secret_env"]})
    return Checked(report, environment, key_var, bool(os.environ.get(key_var)))


def post(job: Job, kind: str, environment: str, body: str, number: int | None = None) -> None:
    """The sticky comment of `kind` on the pull request; a warning, never a failure,
    when GitHub refuses (a fork's token is read-only: the summary has it all)."""
    number = number or job.pull_request
    if not (job.comment and job.github and number):
        return
    try:
        url = job.github.upsert_comment(number, comments.sticky(kind, environment), body)
        print(f"Posted the {kind} comment: {url}", flush=True)
    except GitHubError as e:
        annotate("warning", f"{e}; the result is in the job summary instead")


# -- validate ---------------------------------------------------------------------

def run_validate(job: Job) -> int:
    checked = check(job)
    job.set_output("has-changes", "false")
    if not checked.report["valid"]:
        body = comments.invalid_comment(checked.environment, checked.report, job.run_url)
        post(job, "plan", checked.environment, body)
        job.summary(body)
        return 1
    body = comments.validate_only_comment(checked.environment, checked.report, checked.key_var or "")
    job.summary(body)
    return 0


# -- plan -------------------------------------------------------------------------

def run_plan(job: Job) -> int:
    checked = check(job)
    env_name = checked.environment
    job.set_output("has-changes", "false")
    if not checked.report["valid"]:
        return _invalid(job, checked)
    if not checked.has_key:
        job.set_output("mode", "validate-only")
        annotate("notice", f"{checked.key_var} is not set (a pull request from a fork, or the secret "
                 "is missing): validated the manifest only; no plan.")
        body = comments.validate_only_comment(env_name, checked.report, checked.key_var or "")
        post(job, "plan", env_name, body)
        job.summary(body)
        return 0
    job.set_output("mode", "plan")
    plan_file = job.plan_file or f"convai-sync-plan-{env_name}.json"
    ran = cli("plan", "-f", job.manifest, "--out", plan_file, "--detailed-exitcode")
    if ran.code not in (0, 2):
        body = comments.failure_comment("plan", env_name, job.manifest, "The plan failed", ran.code,
                                        ran.stderr, job.run_url)
        post(job, "plan", env_name, body)
        job.summary(body)
        annotate("error", f"convai-sync plan of {job.manifest} failed (exit {ran.code})")
        return 1
    fingerprint = _fingerprint(plan_file)
    body = comments.plan_comment(env_name, _markdown(job, plan_file), fingerprint)
    post(job, "plan", env_name, body)
    job.summary(comments.plan_comment(env_name, _markdown(job, plan_file, full=True), fingerprint))
    job.set_output("plan-file", plan_file)
    job.set_output("fingerprint", fingerprint)
    job.set_output("has-changes", "true" if ran.code == 2 else "false")
    return ran.code


def _invalid(job: Job, checked: Checked) -> int:
    body = comments.invalid_comment(checked.environment, checked.report, job.run_url)
    post(job, "plan", checked.environment, body)
    job.summary(body)
    return 1


def _fingerprint(plan_file: str) -> str:
    return review_fingerprint(json.loads(Path(plan_file).read_text("utf-8")))


def _markdown(job: Job, plan_file: str, full: bool = False) -> str:
    cut = ["--max-chars", "0"] if full else ["--full-plan-url", job.run_url]
    return cli("show", plan_file, "--format", "markdown", *cut).stdout


# -- apply ------------------------------------------------------------------------

def run_apply(job: Job) -> int:
    checked = check(job)
    env_name = checked.environment
    job.set_output("has-changes", "false")
    if not checked.report["valid"]:
        job.summary(comments.invalid_comment(env_name, checked.report, job.run_url))
        return 1
    if not checked.has_key:
        annotate("notice", f"{checked.key_var} is not set (a fork, or the secret is missing): "
                 f"skipping apply of {job.manifest}.")
        job.set_output("mode", "skipped")
        return 0
    plan_file = job.plan_file or f"convai-sync-apply-{env_name}.json"
    ran = cli("plan", "-f", job.manifest, "--out", plan_file, "--detailed-exitcode")
    if ran.code not in (0, 2):
        job.summary(comments.failure_comment("apply", env_name, job.manifest, "The plan before apply failed",
                                             ran.code, ran.stderr, job.run_url))
        return 1
    job.set_output("plan-file", plan_file)
    if ran.code == 0:
        job.summary(f"### convai-sync apply of `{env_name}`\n\nNothing to apply: the account "
                    "matches the manifest.")
        return 0
    job.set_output("has-changes", "true")
    number, reason = _review(job, env_name, _fingerprint(plan_file))
    if reason and job.on_unreviewed != "apply":
        body = comments.unreviewed_comment(env_name, reason, _markdown(job, plan_file), job.sha)
        post(job, "unreviewed", env_name, body, number)
        job.summary(body)
        annotate("error", f"{reason}: not applied. Review the new plan and run the apply workflow by hand.")
        return 1
    if reason:
        annotate("warning", f"{reason}; applying anyway (on-unreviewed: apply)")
    applied = cli("apply", plan_file, "--report-file", f"convai-sync-report-{env_name}.json")
    sys.stdout.write(applied.stdout)
    job.summary(comments.apply_summary(env_name, applied.stdout + applied.stderr))
    return _keep_state(job, env_name) or applied.code


def _review(job: Job, environment: str, fingerprint: str) -> tuple[int | None, str | None]:
    """(the pull request, why the plan is not the reviewed one, or None when it is)."""
    if job.github is None:
        return None, "no GitHub token, so the reviewed plan cannot be looked up"
    try:
        number = job.github.pull_of_commit(job.sha)
        if number is None:
            return None, f"commit {job.sha[:12]} did not come from a pull request"
        comment = job.github.find_comment(number, comments.sticky("plan", environment))
    except GitHubError as e:
        return None, f"the reviewed plan could not be read ({e})"
    reviewed = comments.reviewed_fingerprint((comment or {}).get("body", ""), environment)
    if reviewed is None:
        return number, f"pull request #{number} shows no plan for {environment}"
    if reviewed != fingerprint:
        return number, (f"the plan for {environment} changed since pull request #{number} was reviewed "
                        "(the account or the manifest changed in between)")
    return number, None


def _keep_state(job: Job, environment: str) -> int:
    if not job.commit_state:
        return 0
    try:
        done = push_state(default_path(job.manifest), job.ref_name,
                          f"convai-sync: record the state of {environment} [skip ci]",
                          job.github.token if job.github else "", job.server_url)
    except PushError as e:
        annotate("error", str(e))
        return 1
    print(f"State: {done}", flush=True)
    return 0


# -- drift ------------------------------------------------------------------------

def run_drift(job: Job) -> int:
    checked = check(job)
    env_name = checked.environment
    if not checked.report["valid"]:
        job.summary(comments.invalid_comment(env_name, checked.report, job.run_url))
        return 1
    if not checked.has_key:
        annotate("notice", f"{checked.key_var} is not set: skipping drift detection of {job.manifest}.")
        job.set_output("mode", "skipped")
        return 0
    endpoints = ("--check-endpoints",) if job.check_endpoints else ()
    ran = cli("drift", "-f", job.manifest, "--format", "markdown", "--full-plan-url", job.run_url,
              *endpoints)
    job.set_output("has-changes", "true" if ran.code == 2 else "false")
    if ran.code not in (0, 2):
        job.summary(comments.failure_comment("drift", env_name, job.manifest, "Drift detection failed",
                                             ran.code, ran.stderr, job.run_url))
        return 1
    body = comments.sticky("drift", env_name) + "\n" + ran.stdout
    job.summary(body)
    return _drift_issue(job, env_name, body, ran.code == 2) or ran.code


def _drift_issue(job: Job, environment: str, body: str, drifted: bool) -> int:
    if not (job.comment and job.github):
        return 0
    marker = comments.sticky("drift", environment)
    try:
        if drifted:
            done = [job.github.open_or_update_issue(DRIFT_LABEL, marker, f"convai-sync: {environment} "
                                                    f"drifted from {job.manifest}", body)]
        else:
            done = job.github.close_issues(DRIFT_LABEL, marker, f"The account matches {job.manifest} "
                                           f"again ([drift run]({job.run_url})); closing.")
    except GitHubError as e:
        annotate("error", f"{e}; the drift report is in the job summary")
        return 1
    for line in done:
        print(line, flush=True)
    return 0


COMMANDS: dict[str, Callable[[Job], int]] = {
    "plan": run_plan, "apply": run_apply, "drift": run_drift, "validate": run_validate}
