"""Commit the state file back after an apply (it holds no secret: model names,
ids and version numbers). Another environment's apply may push first, so a
refused push is rebased onto the branch and tried again.

The checkout keeps no credentials (`persist-credentials: false`): the token is
handed to git for the push alone, through GIT_CONFIG_* variables (never on a
command line, never in .git/config)."""
from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

ATTEMPTS = 4
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


class PushError(Exception):
    pass


def push_state(state_file: Path, branch: str, message: str, token: str = "",
               server_url: str = "https://github.com") -> str:
    """Commit `state_file` if it changed and push it to `branch`; what was done."""
    if not state_file.exists():
        return "no state file to keep"
    _git("add", "--", str(state_file))
    if _git("diff", "--cached", "--quiet", check=False).returncode == 0:
        return "state file unchanged"
    _git("-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}", "commit", "-q", "-m", message)
    auth = _auth(token, server_url)
    for attempt in range(1, ATTEMPTS + 1):
        pushed = _git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", check=False, env=auth)
        if pushed.returncode == 0:
            return f"pushed {state_file} to {branch}"
        if attempt == ATTEMPTS:
            break
        _git("fetch", "-q", "origin", branch, env=auth)
        if _git("rebase", "-q", "FETCH_HEAD", check=False).returncode != 0:
            _git("rebase", "--abort", check=False)
            raise PushError(f"cannot rebase the state commit onto {branch}: {state_file} was changed "
                            "there too; resolve it by hand (the commit is in this job's checkout)")
    raise PushError(f"could not push {state_file} to {branch} after {ATTEMPTS} attempts: "
                    f"{pushed.stderr.strip()}")


def _auth(token: str, server_url: str) -> dict[str, str]:
    if not token:
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{server_url.rstrip('/')}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}"}


def _git(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    if check and done.returncode != 0:
        raise PushError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done
