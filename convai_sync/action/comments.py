"""What the action writes on a pull request, an issue and the job summary.

Every comment starts with a hidden sticky marker naming its kind and
environment, so the next run finds and updates it; a plan comment also carries
the plan's review fingerprint, which apply on merge compares with the plan it
is about to apply."""
from __future__ import annotations

import re
from typing import Any

FENCE = "```"
MAX_ERROR_CHARS = 20_000
_REVIEWED = re.compile(r"<!-- convai-sync:reviewed (\S+) (sha256:[0-9a-f]{64}) -->")


def sticky(kind: str, environment: str) -> str:
    return f"<!-- convai-sync-action:{kind}:{environment} -->"


def reviewed_marker(environment: str, fingerprint: str) -> str:
    return f"<!-- convai-sync:reviewed {environment} {fingerprint} -->"


def reviewed_fingerprint(body: str, environment: str) -> str | None:
    """The fingerprint of the plan a comment showed for `environment`."""
    for env, fingerprint in _REVIEWED.findall(body or ""):
        if env == environment:
            return fingerprint
    return None


def plan_comment(environment: str, markdown: str, fingerprint: str) -> str:
    return "\n".join([
        sticky("plan", environment), reviewed_marker(environment, fingerprint),
        f"**Environment `{environment}`**: on merge, apply applies exactly this plan "
        f"(fingerprint `{fingerprint[7:19]}`), or stops and posts the new plan if the account "
        "or the manifest changed in between.", "", markdown.rstrip("\n"), ""])


def failure_comment(kind: str, environment: str, manifest: str, what: str, code: int,
                    errors: str, run_url: str) -> str:
    return "\n".join([
        sticky(kind, environment), f"### convai-sync {kind} for `{manifest}` (`{environment}`)", "",
        f"\u274c **{what}** (exit {code}):", "", FENCE, errors[:MAX_ERROR_CHARS].rstrip("\n"), FENCE,
        "", f"[Open the workflow run]({run_url})", ""])


def invalid_comment(environment: str, report: dict[str, Any], run_url: str) -> str:
    lines = [f"- `{p['file']}{':' + str(p['line']) if p['line'] else ''}`: {p['message']}"
             for p in report["problems"]]
    return "\n".join([
        sticky("plan", environment), f"### convai-sync validate for `{report['manifest']}` (`{environment}`)",
        "", "\u274c **The manifest is invalid**, so it cannot be planned or applied:", "", *lines, "",
        f"[Open the workflow run]({run_url})", ""])


def validate_only_comment(environment: str, report: dict[str, Any], key_var: str) -> str:
    noun = report["consumer_noun"] + ("" if report["consumers"] == 1 else "s")
    return "\n".join([
        sticky("plan", environment),
        f"### convai-sync validate for `{report['manifest']}` (`{environment}`): validate only", "",
        f"\u2705 The manifest is valid ({report['models']} models, {report['consumers']} {noun}): "
        "syntax, schema, references and includes.", "",
        f"\U0001f512 **No plan was made**: `{key_var}` is not available to this run (a pull request "
        "from a fork, or the secret is not set), so only `validate` ran, which needs no secret. "
        "A run with the account key posts the plan.", ""])


def unreviewed_comment(environment: str, reason: str, markdown: str, sha: str) -> str:
    return "\n".join([
        sticky("unreviewed", environment),
        f"### \u26a0\ufe0f convai-sync did not apply `{environment}`", "",
        f"{reason}, so the plan below (made at {sha[:12]}) was **not applied**: nobody reviewed it. "
        "Review it, then run the apply workflow by hand (workflow_dispatch), which applies the "
        "manifest as it is then.", "", markdown.rstrip("\n"), ""])


def apply_summary(environment: str, output: str) -> str:
    return "\n".join([f"### convai-sync apply of `{environment}`", "", FENCE,
                      output.rstrip("\n") or "(no output)", FENCE])
