"""The GitHub Action end to end: a new repository holding only the manifests
and the copied workflows (with `uses:` pointed at the action, as the README
says) plans every environment on a pull request, applies them in order on
merge (only the reviewed plan), and opens and closes drift issues, against
two emulated accounts and a stub of the GitHub API. The workflows' jobs run
through tests/workflow_runner.py, which executes the action's own steps."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from conftest import ACCOUNT_KEY, CANARIES, EXAMPLES, ROOT, Result, assert_no_secret
from convai_sync.emulator import Emulator
from convai_sync.render.markdown import PLAN_MARKER
from convai_sync.action.comments import sticky
from github_stub import GitHubStub
from workflow_runner import Environment, JobRun, WorkflowRunner

pytestmark = pytest.mark.long  # each runs workflows through bash, git and Python processes

ACTION_REF = "acme/convai-sync@v1"
COPIED = ["plan.yml", "apply.yml", "drift.yml"]
PR = 7


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def readme_commands() -> list[str]:
    """The shell commands of the README's GitHub section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using it in GitHub"):]
    section = section[:section.index("\n## ", 1)]
    return [line for block in re.findall(r"```sh\n(.+?)```", section, re.S) for line in block.splitlines()]


@pytest.fixture
def github() -> Iterator[GitHubStub]:
    stub = GitHubStub()
    yield stub
    stub.stop()


def new_repository(tmp: Path) -> tuple[Path, Path, str]:
    """A repository with only the example manifests and the workflows, copied and
    pointed at the action with the README's own commands: (origin, the first
    clone, main's sha)."""
    origin, work = tmp / "origin.git", tmp / "new-repo"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp, "clone", "-q", str(origin), str(work))
    shutil.copytree(ROOT / "manifests", work / "manifests")
    script = "\n".join(line.replace("/tmp/convai-sync", str(ROOT)).replace("OWNER", "acme").replace("REF", "v1")
                       for line in readme_commands() if not line.startswith("git clone"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, check=True)
    assert sorted(p.name for p in (work / ".github" / "workflows").iterdir()) == sorted(COPIED)
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "convai-sync")
    git(work, "push", "-q", "origin", "HEAD:main")
    return origin, work, git(work, "rev-parse", "HEAD")


def accounts(staging: Emulator, production: Emulator) -> dict[str, Environment]:
    """The GitHub environments the README tells a user to create."""
    out = {}
    for name, emu in (("staging", staging), ("production", production)):
        url = {"CONVAI_API_URL": emu.url}
        out[f"{name}-plan"] = Environment({"CONVAI_API_KEY": ACCOUNT_KEY}, url)
        # no model keys here: the example endpoints do not exist, so drift reports them
        # as not checked (tests/test_endpoints.py covers a drift that checks them)
        out[f"{name}-drift"] = Environment({"CONVAI_API_KEY": ACCOUNT_KEY}, url)
        out[name] = Environment({"CONVAI_API_KEY": ACCOUNT_KEY, **CANARIES}, url)
    return out


def by_env(runs: list[JobRun]) -> dict[str, JobRun]:
    return {r.environment: r for r in runs}


def register_by_hand(emu: Emulator) -> None:
    """Someone adds a model to the account outside git."""
    r = httpx.post(emu.url + "/llm-models/register", headers={"CONVAI-API-KEY": ACCOUNT_KEY},
                   json={"model_group_name": "by-hand", "model_name": "m", "api_key": "k-1", "is_uncensored": False}, verify=False)
    assert r.status_code == 200, r.text


def converged(run: Callable[..., Result], manifest: Path, emu: Emulator, origin: Path) -> bool:
    """Plan shows nothing left, read with the state file the apply pushed (it
    records the applied api_key_version: without it a versioned key is sent)."""
    state = manifest.with_name(manifest.stem + ".state.json")
    state.write_text(git(origin, "show", f"main:manifests/{state.name}") + "\n")
    return run("plan", "-f", str(manifest), "--api-url", emu.url, "--detailed-exitcode",
               "--state-file", str(state)).code == 0


def test_a_new_repository_plans_on_a_pull_request_applies_on_merge_and_detects_drift(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], github: GitHubStub,
        tmp_path: Path) -> None:
    staging, production = make_emulator(), make_emulator()
    origin, work, sha = new_repository(tmp_path)
    runner = WorkflowRunner(origin, tmp_path, github, accounts(staging, production), ACTION_REF)
    workflows = work / ".github" / "workflows"
    manifests = work / "manifests"
    texts: list[str] = []

    # -- a pull request: every environment planned, one sticky comment each --------
    planned = by_env(runner.run(workflows / "plan.yml", "pull_request", {"pull_request": {"number": PR}}, sha))
    assert set(planned) == {"staging-plan", "production-plan"}
    for env, job in planned.items():
        name = env.removesuffix("-plan")
        assert job.ok, job.log
        assert job.outputs["exit-code"] == "2" and job.outputs["has-changes"] == "true"
        assert job.outputs["mode"] == "plan" and job.outputs["environment"] == name
        plan_file = job.workdir / job.outputs["plan-file"]
        assert json.loads(plan_file.read_text())["saved_plan"]["environment"] == name
        assert job.outputs["plan-file"] in job.artifacts
        assert job.outputs["fingerprint"] in job.summary and PLAN_MARKER in job.summary
        assert job.pip_installs == [f"install --quiet --disable-pip-version-check {ROOT}"]
        texts += [job.log, job.summary]
    comments = github.comments_on(PR)
    assert len(comments) == 2
    assert {re.search(r"Environment `(\w+)`", c["body"])[1] for c in comments} == {"staging", "production"}
    assert staging.writes() == [] and production.writes() == []

    # pushed again: the same two comments, updated in place
    runner.run(workflows / "plan.yml", "pull_request", {"pull_request": {"number": PR}}, sha)
    assert [c["id"] for c in github.comments_on(PR)] == [c["id"] for c in comments]
    assert ("PATCH", f"/repos/{github.repo}/issues/comments/{comments[0]['id']}") in github.requests

    # -- merged; production changed by hand after the review ------------------------
    github.commit_pulls[sha] = PR
    register_by_hand(production)
    production.clear_log()
    applied = by_env(runner.run(workflows / "apply.yml", "push",
                                {"repository": {"default_branch": "main"}}, sha))
    assert applied["staging"].ok, applied["staging"].log
    assert converged(run, manifests / "staging.yaml", staging, origin)
    assert not applied["production"].ok and production.writes() == []  # stopped, nothing written
    unreviewed = [c["body"] for c in github.comments_on(PR) if "did not apply `production`" in c["body"]]
    assert len(unreviewed) == 1 and "changed since pull request #7 was reviewed" in unreviewed[0]
    assert "by-hand" in unreviewed[0]  # the new plan (it deregisters the hand-made model) is shown
    assert git(tmp_path, "--git-dir", str(origin), "show", "main:manifests/staging.state.json")
    texts += [applied["staging"].log, applied["production"].log, *unreviewed]

    # -- applied by hand (workflow_dispatch): staging has nothing left, production applies
    # from a checkout behind main (staging's state commit): the push rebases
    staging.clear_log()
    dispatched = by_env(runner.run(workflows / "apply.yml", "workflow_dispatch",
                                   {"repository": {"default_branch": "main"}}, sha))
    assert all(job.ok for job in dispatched.values()), [j.log for j in dispatched.values()]
    # staging's checkout predates its own state commit, so it knows no applied
    # api_key_version: it may send the versioned key again, and nothing else
    assert {r.path for r in staging.writes()} <= {"/llm-models/update"}
    assert all(set(r.body or {}) == {"model_group_name", "api_key"} for r in staging.writes())
    assert converged(run, manifests / "production.yaml", production, origin)
    assert "by-hand" not in production.models()
    log = git(tmp_path, "--git-dir", str(origin), "log", "--format=%s", "main")
    assert log.splitlines()[:2] == ["convai-sync: record the state of production [skip ci]",
                                    "convai-sync: record the state of staging [skip ci]"]
    state = json.loads(git(tmp_path, "--git-dir", str(origin), "show", "main:manifests/production.state.json"))
    assert list(state["accounts"]) == [f"production@{production.url}"]
    texts += [j.log + j.summary for j in dispatched.values()]

    # -- drift on schedule: in sync, then drifted (one issue, updated), then closed ----
    schedule = workflows / "drift.yml"
    register_by_hand(staging)
    head = git(tmp_path, "--git-dir", str(origin), "rev-parse", "main")  # with the state commits
    for _ in range(2):
        drifted = by_env(runner.run(schedule, "schedule", {}, head))
        assert drifted["staging-drift"].ok and drifted["staging-drift"].outputs["exit-code"] == "2"
        assert drifted["production-drift"].ok and drifted["production-drift"].outputs["exit-code"] == "0"
    issues = list(github.issues.values())  # one: in sync (production) opens none, drift twice one
    assert len(issues) == 1 and issues[0]["labels"] == ["convai-sync-drift"]
    assert "by-hand" in issues[0]["body"] and "staging" in issues[0]["title"]
    assert run("apply", "-f", str(manifests / "staging.yaml"), "--api-url", staging.url,
               "--auto-approve", "--state-file", str(tmp_path / "s.json")).code == 0
    runner.run(schedule, "schedule", {}, head)
    assert issues[0]["state"] == "closed"
    texts += [issues[0]["body"], *(c["body"] for c in github.comments.values())]
    assert_no_secret(*texts)


# -- single steps: forks, bad manifests, unreviewed merges, failures --------------

def one_step(tmp: Path, command: str, env: dict[str, str], **inputs: str) -> Path:
    """A workflow with one job: checkout, then the action with these inputs and env."""
    path = tmp / f"wf-{len(list(tmp.glob('wf-*')))}.yml"
    step = {"uses": ACTION_REF, "with": {"command": command, "manifest": "manifests/staging.yaml", **inputs},
            "env": env}
    path.write_text(json.dumps({"jobs": {"job": {"steps": [{"uses": "actions/checkout@v"}, step]}}}))
    return path


def commit(work: Path, message: str) -> str:
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def setup(make_emulator: Callable[..., Emulator], github: GitHubStub, tmp_path: Path):
    emu = make_emulator()
    origin, work, sha = new_repository(tmp_path)
    runner = WorkflowRunner(origin, tmp_path, github, {}, ACTION_REF)
    account = {"CONVAI_API_URL": emu.url, "CONVAI_API_KEY": ACCOUNT_KEY}
    return emu, work, sha, runner, account


def test_a_fork_gets_validate_results_marked_as_such(setup, github: GitHubStub, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    pr = {"pull_request": {"number": 8}}
    [job] = runner.run(one_step(tmp_path, "plan", {}), "pull_request", pr, sha)
    assert job.ok, job.log
    assert (job.outputs["mode"], job.outputs["exit-code"], job.outputs["has-changes"]) == \
        ("validate-only", "0", "false")
    [comment] = github.comments_on(8)
    assert "validate only" in comment["body"] and "`CONVAI_API_KEY` is not available" in comment["body"]
    assert "The manifest is valid (3 models, 2 characters)" in comment["body"]
    assert "::notice::CONVAI_API_KEY is not set" in job.log
    assert emu.requests == []
    # a fork's token cannot comment: a warning, the result in the summary, the check still passes
    github.refuse_writes = True
    [job] = runner.run(one_step(tmp_path, "plan", {}), "pull_request", {"pull_request": {"number": 9}}, sha)
    assert job.ok and "::warning::GitHub API POST" in job.log and "HTTP 403" in job.log
    assert "validate only" in job.summary and github.comments_on(9) == []


def test_an_invalid_manifest_fails_the_check_with_annotations_at_file_and_line(
        setup, github: GitHubStub, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    common = work / "manifests" / "models.common.yaml"
    common.write_text(common.read_text().replace("Qwen3-32B\n    base_url: https://vllm.example-studio.com/v1",
                                                 "Qwen3-32B\n    base_url: ftp://vllm"))
    sha = commit(work, "break it")
    line = next(i for i, text in enumerate(common.read_text().splitlines(), 1) if "ftp://vllm" in text)
    for env in (account, {}):  # with the key, and from a fork
        [job] = runner.run(one_step(tmp_path, "plan", env), "pull_request", {"pull_request": {"number": 3}}, sha)
        assert not job.ok and job.outputs["exit-code"] == "1"
        assert f"::error file=manifests/models.common.yaml,line={line}::models[2].base_url must be an " \
               "http(s) URL" in job.log
        assert "(included from manifests/staging.yaml:6)" in job.log
    [comment] = github.comments_on(3)  # one sticky comment, updated
    assert "The manifest is invalid" in comment["body"]
    assert f"`manifests/models.common.yaml:{line}`: models[2].base_url" in comment["body"]
    assert emu.requests == []


def test_a_merge_without_a_reviewed_plan_is_not_applied(setup, github: GitHubStub, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    push = {"repository": {"default_branch": "main"}}
    secrets = json.dumps(CANARIES)
    [job] = runner.run(one_step(tmp_path, "apply", account, secrets=secrets), "push", push, sha)
    assert not job.ok and emu.writes() == []
    assert f"commit {sha[:12]} did not come from a pull request: not applied" in job.log
    assert github.comments == {}
    github.commit_pulls[sha] = 5  # a pull request, but its plan was never posted
    [job] = runner.run(one_step(tmp_path, "apply", account, secrets=secrets), "push", push, sha)
    assert not job.ok and emu.writes() == []
    [comment] = github.comments_on(5)
    assert "pull request #5 shows no plan for staging" in comment["body"]
    assert "did not apply `staging`" in comment["body"] and PLAN_MARKER in comment["body"]
    # the explicit setting applies it anyway, with a warning
    [job] = runner.run(one_step(tmp_path, "apply", account, secrets=secrets, **{"on-unreviewed": "apply"}),
                       "push", push, sha)
    assert job.ok, job.log
    assert "::warning::pull request #5 shows no plan for staging; applying anyway" in job.log
    assert "The account now matches the manifest." in job.summary
    assert_no_secret(job.log, job.summary, comment["body"])


def test_an_apply_without_the_model_keys_writes_nothing(setup, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    [job] = runner.run(one_step(tmp_path, "apply", account, **{"on-unreviewed": "apply"}), "push",
                       {"repository": {"default_branch": "main"}}, sha)
    assert not job.ok and emu.writes() == []
    assert "environment variable STUDIO_GATEWAY_KEY is not set" in job.summary + job.log


def test_a_failed_plan_is_posted_and_fails_the_check(setup, github: GitHubStub, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    closed = {**account, "CONVAI_API_URL": "http://127.0.0.1:9"}
    [job] = runner.run(one_step(tmp_path, "plan", closed), "pull_request", {"pull_request": {"number": 4}}, sha)
    assert not job.ok and job.outputs["exit-code"] == "1"
    [comment] = github.comments_on(4)
    assert "The plan failed" in comment["body"] and "127.0.0.1:9" in comment["body"]
    assert "::error::convai-sync plan of manifests/staging.yaml failed (exit 1)" in job.log
    for command, what in (("apply", "The plan before apply failed"), ("drift", "Drift detection failed")):
        [job] = runner.run(one_step(tmp_path, command, closed), "schedule", {}, sha)
        assert not job.ok and job.outputs["exit-code"] == "1" and what in job.summary
    assert github.issues == {} and len(github.comments) == 1


def test_environment_comment_and_commit_state_inputs(setup, github: GitHubStub, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    pr = {"pull_request": {"number": 6}}
    [job] = runner.run(one_step(tmp_path, "plan", account, environment="qa"), "pull_request", pr, sha)
    assert job.outputs["environment"] == "qa" and job.outputs["plan-file"] == "convai-sync-plan-qa.json"
    assert sticky("plan", "qa") in github.comments_on(6)[0]["body"]
    [job] = runner.run(one_step(tmp_path, "plan", account, environment="qa", comment="false"), "pull_request",
                       {"pull_request": {"number": 2}}, sha)
    assert job.ok and github.comments_on(2) == []
    github.commit_pulls[sha] = 6
    [job] = runner.run(one_step(tmp_path, "apply", account, environment="qa", secrets=json.dumps(CANARIES),
                                **{"commit-state": "false"}), "push", {}, sha)
    assert job.ok, job.log
    assert (job.workdir / "manifests" / "staging.state.json").exists()  # written, not pushed
    assert git(work, "ls-remote", "origin", "main").split()[0] == sha


def test_a_wrong_input_is_named(setup, tmp_path: Path) -> None:
    emu, work, sha, runner, account = setup
    [job] = runner.run(one_step(tmp_path, "deploy", account), "push", {}, sha)
    assert not job.ok
    assert "::error::convai-sync action: input command is 'deploy'; use one of plan, apply, drift, validate" in job.log
    [job] = runner.run(one_step(tmp_path, "apply", account, **{"on-unreviewed": "maybe"}), "push", {}, sha)
    assert not job.ok and "input on-unreviewed is 'maybe'; use stop or apply" in job.log


def test_the_action_works_for_any_platform_from_the_manifest(setup, github: GitHubStub,
                                                             tmp_path: Path) -> None:
    from convai_sync.providers.vapi.emulator import VapiEmulator, vapi_demo_seed
    emu, work, sha, runner, account = setup
    shutil.copy(EXAMPLES / "vapi.yaml", work / "manifests" / "staging.yaml")
    sha = commit(work, "a Vapi account")
    vapi = VapiEmulator(api_key="vapi-key-test", seed=vapi_demo_seed())
    vapi.start()
    try:
        pr = {"pull_request": {"number": 11}}
        # the Convai key is there, but the manifest is Vapi's: validate only, naming Vapi's key
        [job] = runner.run(one_step(tmp_path, "plan", account), "pull_request", pr, sha)
        assert job.ok and job.outputs["mode"] == "validate-only"
        assert "`VAPI_API_KEY` is not available" in github.comments_on(11)[0]["body"]
        vapi_account = {"VAPI_API_URL": vapi.url, "VAPI_API_KEY": "vapi-key-test"}
        [job] = runner.run(one_step(tmp_path, "plan", vapi_account), "pull_request", pr, sha)
        assert job.ok and job.outputs["mode"] == "plan", job.log
        [comment] = github.comments_on(11)
        assert "platform `vapi`" in comment["body"] and "Environment `staging`" in comment["body"]
        assert emu.requests == []  # the Convai account was never asked
    finally:
        vapi.stop()
