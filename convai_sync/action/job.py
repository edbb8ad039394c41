"""The workflow job the action runs in: its inputs (INPUT_*, as action.yml maps
them: a composite action's inputs reach a step only through its env), what GitHub says
about the run (GITHUB_*), and the files through which a step answers (outputs,
job summary) and the log commands it prints (annotations)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .github_api import GitHub

COMMANDS = ("plan", "apply", "drift", "validate")
ON_UNREVIEWED = ("stop", "apply")


class InputError(Exception):
    """A wrong input to the action: the workflow must be fixed."""


@dataclass
class Job:
    command: str
    manifest: str
    environment: str                 # "" = the manifest's (validate --format json says which)
    plan_file: str
    on_unreviewed: str
    comment: bool
    commit_state: bool
    check_endpoints: bool            # drift: also check every model's endpoint
    secrets: dict[str, str]          # toJSON(secrets), when the caller passes them
    github: GitHub | None            # None: no token, so nothing is posted
    event: dict[str, Any]
    event_name: str
    sha: str
    ref_name: str
    run_url: str
    server_url: str
    output_file: str | None
    summary_file: str | None
    outputs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Job":
        env = os.environ if env is None else env
        command = env.get("INPUT_COMMAND", "").strip()
        if command not in COMMANDS:
            raise InputError(f"input command is {command!r}; use one of {', '.join(COMMANDS)}")
        manifest = env.get("INPUT_MANIFEST", "").strip()
        if not manifest:
            raise InputError("input manifest is empty; pass the manifest's path, e.g. manifests/production.yaml")
        on_unreviewed = env.get("INPUT_ON_UNREVIEWED", "").strip() or "stop"
        if on_unreviewed not in ON_UNREVIEWED:
            raise InputError(f"input on-unreviewed is {on_unreviewed!r}; use stop or apply")
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo, token = env.get("GITHUB_REPOSITORY", ""), env.get("INPUT_GITHUB_TOKEN", "")
        return cls(
            command=command, manifest=manifest, environment=env.get("INPUT_ENVIRONMENT", "").strip(),
            plan_file=env.get("INPUT_PLAN_FILE", "").strip(),
            on_unreviewed=on_unreviewed, comment=_flag(env, "COMMENT", True),
            commit_state=_flag(env, "COMMIT_STATE", True),
            check_endpoints=_flag(env, "CHECK_ENDPOINTS", False), secrets=_secrets(env.get("INPUT_SECRETS", "")),
            github=GitHub(env.get("GITHUB_API_URL", "https://api.github.com"), repo, token) if token and repo else None,
            event=_event(env.get("GITHUB_EVENT_PATH")), event_name=env.get("GITHUB_EVENT_NAME", ""),
            sha=env.get("GITHUB_SHA", ""), ref_name=env.get("GITHUB_REF_NAME", ""),
            run_url=f"{server}/{repo}/actions/runs/{env.get('GITHUB_RUN_ID', '')}", server_url=server,
            output_file=env.get("GITHUB_OUTPUT"), summary_file=env.get("GITHUB_STEP_SUMMARY"))

    @property
    def pull_request(self) -> int | None:
        pr = self.event.get("pull_request") or {}
        return pr.get("number")

    def set_output(self, name: str, value: str) -> None:
        self.outputs[name] = value
        if self.output_file:
            with open(self.output_file, "a", encoding="utf-8") as f:
                f.write(f"{name}={value}\n")

    def summary(self, markdown: str) -> None:
        if self.summary_file:
            with open(self.summary_file, "a", encoding="utf-8") as f:
                f.write(markdown.rstrip("\n") + "\n\n")


def annotate(level: str, message: str, file: str | None = None, line: int | None = None) -> None:
    """A workflow command: shown on the run, and on the pull request's diff at FILE:LINE."""
    where = ",".join(p for p in (f"file={_prop(file)}" if file else "",
                                 f"line={line}" if line else "") if p)
    print(f"::{level}{' ' + where if where else ''}::{_data(message)}", flush=True)


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(f"INPUT_{name}", "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise InputError(f"input {name.lower().replace('_', '-')} is {value!r}; use true or false")
    return value == "true"


def _secrets(text: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        values = json.loads(text)
    except ValueError:
        raise InputError("input secrets is not JSON; pass ${{ toJSON(secrets) }}") from None
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def _event(path: str | None) -> dict[str, Any]:
    if not path or not Path(path).is_file():
        return {}
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except ValueError:
        return {}
