"""What the commands share: options, logging, rendering a plan, confirming and
running an apply. Imported by cli.py and cli_gitops.py; imports neither."""
from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .account import EMULATOR_SECRET, Target
from .engine import Options, apply_plan, converged, state_path
from .errors import ConvaiSyncError
from .escape import inline
from .executor import Keys
from .lock import apply_lock
from .manifest import LoadedManifest, ResolvedSecrets, resolve_secrets
from .plan import Plan
from .planner import Brakes
from .progress import StderrProgress
from .providers.base import Client, Platform
from .render.text import render_plan, render_report, use_color
from .retry import RetryPolicy
from .scope import Scope
from .secrets import scrub
from .state import SyncState

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
FORMATS = click.Choice(["text", "json", "markdown"])


def manifest_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-f", "--file", "manifest_path", required=True, metavar="MANIFEST",
                        type=click.Path(dir_okay=True), help="The manifest (YAML).")(f)


WRITES = "Concurrent requests: writes inside an apply phase (and reads that need several)."
READS = "Concurrent requests, for reads that need several (this command writes nothing)."
STATE_HELP = ("Where applied api_key_versions (and characters a failed replace left parked) "
              "are kept [default: MANIFEST's name with .state.json]. Holds no secrets.")


def account_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The account options of a command that writes (apply)."""
    return _account_options(f, WRITES, STATE_HELP)


def read_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The account options of a command that only reads (plan, drift)."""
    return _account_options(f, READS, STATE_HELP)


def stateless_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The account options of a command that reads no state file (export, ping, import)."""
    return _account_options(f, READS, "Accepted for symmetry; this command reads no state file "
                            "(it works from the live account alone).")


def color_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--no-color, for the commands that colour a terminal's output."""
    def disable(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.find_root().meta["no_color"] = True
        return value
    return click.option("--no-color", is_flag=True, expose_value=False, callback=disable,
                        help="No colour, even on a terminal (as NO_COLOR=1 does).")(f)


def _account_options(f: Callable[..., Any], parallelism: str, state: str) -> Callable[..., Any]:
    f = click.option("--api-url", metavar="URL",
                     help="The platform's API base URL [env CONVAI_API_URL, LANGBOT_API_URL or "
                          "VAPI_API_URL, by the manifest's platform; Convai's default "
                          "https://api.convai.com].")(f)
    f = click.option("--emulator", is_flag=True,
                     help="Run against an in-process emulator seeded with demo state (a fresh one each "
                          "run: a second plan after an apply shows the same changes; model endpoints: "
                          "a loopback OpenAI-compatible stub).")(f)
    # 10: measured in bench/RESULTS.md (within 1.3x of the round-trip bound; as Terraform/decK)
    f = click.option("--parallelism", type=click.IntRange(1, 64), default=10, show_default=True,
                     help=parallelism)(f)
    f = click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for HTTP).")(f)
    f = click.option("--retry-max-time", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
                     metavar="SECONDS", help="The most one request may take (at least 2 s), Retry-After "
                     "pauses and slow replies included: retrying (429, 5xx, timeouts) stops after this "
                     f"long, or after {RetryPolicy.max_attempts} attempts, whichever comes first. -v "
                     "shows each retry.")(f)
    f = click.option("--state-file", type=click.Path(dir_okay=False), metavar="FILE", help=state)(f)
    return f


def brake_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--allow-empty", is_flag=True,
                     help="Allow an empty models list with prune to deregister every model.")(f)
    f = click.option("--allow-deregister", is_flag=True,
                     help="Allow more deregistrations/replacements than settings.max_deregister.")(f)
    return f


def scope_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--target", "targets", multiple=True, metavar="NAME",
                     help="Plan only this model or consumer (and what the safe order needs for "
                          "it: the model it moves onto, the consumers a model leaves). Repeatable.")(f)
    f = click.option("--replace", "replace", multiple=True, metavar="MODEL",
                     help="Send this model's key again (an update that sends it), e.g. after "
                          "the key was changed by hand. Repeatable.")(f)
    return f


def options(opts: dict[str, Any]) -> Options:
    return Options(Brakes(allow_empty=opts.get("allow_empty", False),
                          allow_deregister=opts.get("allow_deregister", False)),
                   opts.get("state_file"), opts["emulator"], opts["parallelism"],
                   Scope(frozenset(opts.get("targets", ())), frozenset(opts.get("replace", ()))))


def target(opts: dict[str, Any], variant: str) -> Target:
    """The account to open; `variant` (auto or a dialect) only picks the emulator's."""
    configure_logging(opts["verbose"])
    if opts["emulator"] and opts["api_url"]:
        raise click.UsageError("--emulator runs against a built-in emulator, so it cannot be "
                               "combined with --api-url; drop one of them")
    return Target(api_url=opts["api_url"], emulator=opts["emulator"], emulator_dialect=variant,
                  parallelism=opts["parallelism"], retry=RetryPolicy(max_total=opts["retry_max_time"]))


def account_label(opts: dict[str, Any], client: Client) -> str:
    """The account a plan was made against, as saved plans and exports name it."""
    return "emulator" if opts["emulator"] else client.base_url


def emit_plan(result: Plan, fmt: str, source: str | None = None, **markdown: Any) -> None:
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    elif fmt == "markdown":
        from .render.markdown import render_plan_markdown
        click.echo(render_plan_markdown(result, source=source, **markdown), nl=False)
    else:
        click.echo(plan_text(result), nl=False)


def plan_text(result: Plan) -> str:
    """The text plan for stdout; its warnings go to stderr, as every warning does."""
    for warning in result.warnings:
        click.echo(f"Warning: {inline(warning)}", err=True)
    return render_plan(result, color=use_color(sys.stdout), warnings=False)


def write_json(path: str, doc: dict[str, Any]) -> None:
    write_text(path, scrub(json.dumps(doc, indent=2)) + "\n")


def write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, "utf-8")
    except OSError as e:
        raise ConvaiSyncError(f"{path}: cannot write: {e.strerror}") from None


def manifest_secrets(loaded: LoadedManifest, emulator: bool) -> ResolvedSecrets:
    return resolve_secrets(loaded, placeholder=EMULATOR_SECRET if emulator else None)


def require_keys(resolved: ResolvedSecrets, plan: Plan) -> None:
    """Refuse, before the first write, when a key this apply sends is unset; a
    variable of a model whose key it does not send may stay unset."""
    needed = resolved.only(plan.key_models())
    if needed.missing:
        raise needed.refusal()


def warn_missing(resolved: ResolvedSecrets, plan: Plan) -> None:
    needed = resolved.only(plan.key_models())
    if needed.missing:
        click.echo("Warning: " + needed.missing_message().replace("\n", "\nWarning: ") +
                   "\nWarning: apply will refuse to run until these are set.", err=True)


def run_apply(result: Plan, client: Client, keys: Keys, state: SyncState, opts: dict[str, Any],
              auto_approve: bool, report_file: str | None,
              before: Callable[[], None] | None = None) -> bool:
    """Show, check (`before`: may refuse), confirm, apply, report. Exits 1 when
    a change failed; returns whether anything was applied (and so is worth verifying)."""
    emit_plan(result, "text")
    if before is not None:
        before()
    if not result.empty:
        confirm(auto_approve)
    report = apply_plan(result, client, keys, state, options(opts),
                        StderrProgress(sys.stderr, result))
    if report_file:
        write_json(report_file, report.to_json())
    if result.empty:
        return False
    click.echo(render_report(report), nl=False)
    for note in report.notes:
        click.echo(note, err=True)
    if not report.ok:
        sys.exit(EXIT_ERROR)
    return True


def locked(client: Client, manifest_path: str | None, opts: dict[str, Any]) -> Any:
    """The apply lock of this account and state file (none on the in-process emulator)."""
    if opts["emulator"]:
        return contextlib.nullcontext()
    return apply_lock(client.base_url, state_path(manifest_path, options(opts)),
                      opts.get("force_unlock", False))


def verify_converged(loaded: LoadedManifest, client: Client, opts: dict[str, Any],
                     state: SyncState, applied: Plan) -> None:
    """An apply is finished when plan says nothing is left (of its --target)."""
    left = converged(loaded, client, options(opts), state, applied)
    if left.empty:
        click.echo("The account now matches the manifest.")
        return
    click.echo(f"Warning: after apply, the account still differs: {left.summary_line()} "
               "Another client may be changing it; run plan to see the difference.", err=True)
    sys.exit(EXIT_ERROR)


def confirm(auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise ConvaiSyncError("apply needs confirmation but there is no terminal to ask on; "
                              "review the plan above and pass --auto-approve. Nothing was written.")
    answer = click.prompt("Do you want to perform these actions? Only 'yes' will be accepted",
                          default="", show_default=False, err=True)
    if answer.strip() != "yes":
        raise ConvaiSyncError("apply cancelled; nothing was written.")


def configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose < 2:
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)


class _ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def platform_named(name: str) -> Platform:
    from .providers.registry import platform
    return platform(name)
