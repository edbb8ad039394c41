"""The action's parts on their own: the GitHub API calls (paging, only the
bot's own comment, the drift label), workflow commands, inputs, and the state
push that rebases when another job pushed first."""
from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from convai_sync.action import comments
from convai_sync.action.github_api import GitHub, GitHubError
from convai_sync.action.job import InputError, Job, annotate
from convai_sync.action.state_push import PushError, _auth, push_state
from github_stub import GitHubStub


@pytest.fixture
def stub() -> Iterator[GitHubStub]:
    s = GitHubStub()
    yield s
    s.stop()


def api(stub: GitHubStub, token: str | None = None) -> GitHub:
    return GitHub(stub.url, stub.repo, token or stub.token)


def test_the_sticky_comment_is_found_past_the_first_page_and_never_a_persons(stub: GitHubStub) -> None:
    gh = api(stub)
    marker = comments.sticky("plan", "production")
    for i in range(150):
        gh.create_comment(1, f"chatter {i}")
    mine = gh.create_comment(1, marker + "\nold plan")
    person = next(iter(stub.comments.values()))
    person["user"] = {"login": "someone", "type": "User"}
    person["body"] = f"quoting {marker}"
    assert gh.upsert_comment(1, marker, marker + "\nnew plan") == mine
    assert len(stub.comments_on(1)) == 151
    assert [c["body"] for c in stub.comments_on(1) if "plan\n" in c["body"] or " plan" in c["body"]] == \
        [marker + "\nnew plan"]
    assert person["body"] == f"quoting {marker}"
    assert ("GET", f"/repos/{stub.repo}/issues/1/comments?per_page=100&page=2") in stub.requests


def test_drift_issue_is_opened_once_updated_then_closed(stub: GitHubStub) -> None:
    gh = api(stub)
    marker = comments.sticky("drift", "staging")
    stub.labels.add("convai-sync-drift")  # exists already: 422 is fine
    assert gh.open_or_update_issue("convai-sync-drift", marker, "t", marker + " v1").startswith("Opened issue #")
    assert gh.open_or_update_issue("convai-sync-drift", marker, "t", marker + " v2").startswith("Updated issue #")
    other = comments.sticky("drift", "production")
    assert gh.close_issues("convai-sync-drift", other, "done") == []  # another environment's issue stays
    [issue] = stub.issues.values()
    assert issue["body"] == marker + " v2" and issue["state"] == "open"
    assert gh.close_issues("convai-sync-drift", marker, "matches again") == [f"Closed issue #{issue['number']}"]
    assert issue["state"] == "closed" and stub.comments_on(issue["number"])[0]["body"] == "matches again"


def test_api_errors_name_the_call_and_the_status(stub: GitHubStub) -> None:
    with pytest.raises(GitHubError) as bad_token:
        api(stub, "wrong").create_comment(1, "x")
    assert str(bad_token.value) == (f"GitHub API POST /repos/{stub.repo}/issues/1/comments: HTTP 401: "
                                    "Bad credentials") and bad_token.value.status == 401
    with pytest.raises(GitHubError) as unreachable:
        GitHub("http://127.0.0.1:9", stub.repo, "t").pull_of_commit("abc")
    assert unreachable.value.status == 0


def test_the_reviewed_fingerprint_is_read_for_its_environment_only() -> None:
    fp = "sha256:" + "ab" * 32
    body = comments.plan_comment("staging", "plan", fp)
    assert comments.reviewed_fingerprint(body, "staging") == fp
    assert comments.reviewed_fingerprint(body, "production") is None
    assert comments.reviewed_fingerprint("no marker here", "staging") is None


def test_workflow_commands_escape_what_would_end_them(capsys: pytest.CaptureFixture[str]) -> None:
    annotate("error", "50% done\nnext line", "dir/a,b:c.yaml", 7)
    annotate("notice", "plain")
    assert capsys.readouterr().out.splitlines() == [
        "::error file=dir/a%2Cb%3Ac.yaml,line=7::50%25 done%0Anext line", "::notice::plain"]


@pytest.mark.parametrize("env, message", [
    ({"INPUT_COMMAND": "plan"}, "input manifest is empty"),
    ({"INPUT_COMMAND": "plan", "INPUT_MANIFEST": "m.yaml", "INPUT_COMMENT": "yes"},
     "input comment is 'yes'; use true or false"),
    ({"INPUT_COMMAND": "apply", "INPUT_MANIFEST": "m.yaml", "INPUT_SECRETS": "{not json"},
     "input secrets is not JSON"),
])
def test_wrong_inputs_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Job.from_env(env)


def test_inputs_and_the_event_are_read(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"pull_request": {"number": 12}}')
    job = Job.from_env({"INPUT_COMMAND": "apply", "INPUT_MANIFEST": "m.yaml", "INPUT_COMMENT": "false",
                        "INPUT_COMMIT_STATE": "false", "INPUT_SECRETS": '{"K": "v"}',
                        "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "o/r"})
    assert (job.pull_request, job.comment, job.commit_state, job.secrets) == (12, False, False, {"K": "v"})
    assert job.github is None  # no token: nothing is posted
    assert Job.from_env({"INPUT_COMMAND": "plan", "INPUT_MANIFEST": "m"}).comment is True


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path]:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(origin), str(seed))
    (seed / "m.yaml").write_text("version: 1\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    job = tmp_path / "job"
    git(tmp_path, "clone", "-q", str(origin), str(job))
    return seed, job


def push_meanwhile(seed: Path, name: str, text: str, message: str) -> None:
    """Another job pushes to main after this job checked out."""
    (seed / name).write_text(text)
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", message)
    git(seed, "push", "-q", "origin", "HEAD:main")


def test_state_push_rebases_onto_a_push_made_meanwhile(clones: tuple[Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seed, job = clones
    push_meanwhile(seed, "other.state.json", "{}\n", "another environment's state")
    monkeypatch.chdir(job)
    (job / "m.state.json").write_text('{"a": 1}\n')
    assert push_state(Path("m.state.json"), "main", "record m") == "pushed m.state.json to main"
    git(seed, "pull", "-q", "origin", "main")
    assert git(seed, "log", "--format=%s").splitlines()[:2] == ["record m", "another environment's state"]
    assert push_state(Path("m.state.json"), "main", "again") == "state file unchanged"
    assert push_state(Path("none.state.json"), "main", "x") == "no state file to keep"


def test_state_push_stops_when_the_same_file_changed_there(clones: tuple[Path, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seed, job = clones
    push_meanwhile(seed, "m.state.json", '{"theirs": 1}\n', "theirs")
    monkeypatch.chdir(job)
    (job / "m.state.json").write_text('{"ours": 1}\n')
    with pytest.raises(PushError, match="m.state.json was changed there too; resolve it by hand"):
        push_state(Path("m.state.json"), "main", "ours")
    assert git(job, "status", "--porcelain") == ""  # the rebase was aborted, the commit kept


def test_the_token_reaches_git_only_through_the_environment() -> None:
    env = _auth("ghs-secret", "https://github.example/")
    basic = base64.b64encode(b"x-access-token:ghs-secret").decode()
    assert env == {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.https://github.example/.extraheader",
                   "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}"}
    assert _auth("", "https://github.com") == {}


def test_the_step_exports_only_the_manifests_secrets_and_drops_its_inputs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import ROOT
    from convai_sync.action.commands import main
    monkeypatch.chdir(ROOT)
    for name in ("STUDIO_VLLM_KEY", "CONVAI_API_KEY", "CONVAI_API_URL", "OTHER_SECRET",
                 "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)  # restored after the test, whatever main sets
    monkeypatch.setenv("STUDIO_GATEWAY_KEY", "set-by-the-caller")
    secrets = {"STUDIO_VLLM_KEY": "sk-x", "STUDIO_GATEWAY_KEY": "sk-y", "OTHER_SECRET": "o"}
    for name, value in {"INPUT_COMMAND": "validate", "INPUT_MANIFEST": "manifests/staging.yaml",
                        "INPUT_SECRETS": json.dumps(secrets), "INPUT_GITHUB_TOKEN": "ghs-x"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    assert "INPUT_SECRETS" not in os.environ and "INPUT_GITHUB_TOKEN" not in os.environ
    assert os.environ["STUDIO_VLLM_KEY"] == "sk-x"                  # named by the manifest
    assert os.environ["STUDIO_GATEWAY_KEY"] == "set-by-the-caller"  # the caller's env wins
    assert "OTHER_SECRET" not in os.environ                         # not named: never exported
