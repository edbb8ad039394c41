"""Command-line interface: parse, call, render, exit code. No logic here."""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from . import __version__
from .account import EMULATOR_SECRET, Target, open_account
from .errors import ConvaiSyncError
from .cli_markdown import markdown_options, markdown_settings
from .executor import execute
from .manifest import LoadedManifest, ResolvedSecrets, load_manifest, resolve_secrets
from .model import LiveState
from .plan import Plan
from .planner import Brakes, build_plan
from .progress import StderrProgress
from .providers.convai import ConvaiClient
from .render.text import render_plan, render_report, use_color
from .render.values import count
from .retry import RetryPolicy
from .saved_plan import saved_document
from .secrets import Secret, scrub
from .state import SyncState, default_path, record_applied

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
log = logging.getLogger("convai_sync")


def _manifest_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-f", "--file", "manifest_path", required=True, metavar="MANIFEST",
                        type=click.Path(dir_okay=True), help="The manifest (YAML).")(f)


def _account_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--api-url", envvar="CONVAI_API_URL", metavar="URL",
                     help="Convai API base URL [env CONVAI_API_URL; default https://api.convai.com].")(f)
    f = click.option("--emulator", is_flag=True,
                     help="Run against an in-process emulator seeded with demo state.")(f)
    # 10: measured in bench/RESULTS.md (within 1.3x of the round-trip bound; as Terraform/decK)
    f = click.option("--parallelism", type=click.IntRange(1, 64), default=10, show_default=True,
                     help="Concurrent writes inside a phase.")(f)
    f = click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for HTTP).")(f)
    f = click.option("--retry-max-time", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
                     metavar="SECONDS", help="Give up retrying one request (429, 5xx, timeouts) after this long.")(f)
    f = click.option("--state-file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Where applied api_key_versions (and characters a failed replace "
                          "left parked) are kept [default: MANIFEST's name with .state.json]. "
                          "Holds no secrets.")(f)
    return f


def _brake_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--allow-empty", is_flag=True,
                     help="Allow an empty models list with prune to deregister every model.")(f)
    f = click.option("--allow-deregister", is_flag=True,
                     help="Allow more deregistrations/replacements than settings.max_deregister.")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convai-sync")
def cli() -> None:
    """Terraform-style GitOps for the custom LLMs behind Convai characters."""


@cli.command()
@_manifest_option
def validate(manifest_path: str) -> None:
    """Check a manifest offline: syntax, types, references. Exit 0 if valid."""
    loaded = load_manifest(manifest_path)
    m = loaded.manifest
    click.echo(f"{manifest_path}: valid ({count(len(m.models), 'model')}, "
               f"{count(len(m.characters), 'character')})")


@cli.command()
@_manifest_option
@_account_options
@_brake_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), metavar="PLANFILE",
              help="Also save the plan for `apply PLANFILE` (JSON; holds no secret).")
@markdown_options
def plan(manifest_path: str, fmt: str, detailed_exitcode: bool, out_file: str | None,
         **opts: Any) -> None:
    """Show what apply would change, in the order it would change it."""
    markdown = markdown_settings(opts)
    loaded = load_manifest(manifest_path)
    secrets = _secrets(loaded, opts["emulator"], strict=False)
    with open_account(_target(opts, loaded)) as client:
        live = _read_live(loaded, client)
        result = _plan(loaded, client, opts, live=live)
        account = account_label(opts, client)
    _emit_plan(result, fmt, source=manifest_path, **markdown)
    if out_file:
        _write_json(out_file, saved_document(result, loaded, live, account))
        click.echo(f"Saved the plan to {out_file}; apply exactly it with: convai-sync apply {out_file}",
                   err=True)
    _warn_missing(secrets)
    sys.exit(EXIT_CHANGES if detailed_exitcode and not result.empty else EXIT_OK)


@cli.command()
@click.argument("plan_file", required=False, metavar="[PLANFILE]")
@click.option("-f", "--file", "manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=True),
              help="The manifest (YAML); or pass a saved PLANFILE instead.")
@_account_options
@_brake_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option("--report-file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write the apply report (every change: done, failed, not attempted) as JSON.")
def apply(manifest_path: str | None, auto_approve: bool, report_file: str | None,
          plan_file: str | None = None, **opts: Any) -> None:
    """Plan, confirm, then apply phase by phase. With PLANFILE (from plan --out):
    apply exactly that plan, or refuse, writing nothing, if the account changed."""
    if (manifest_path is None) == (plan_file is None):
        raise click.UsageError("pass exactly one of -f MANIFEST and a saved PLANFILE")
    if plan_file is not None:
        from .cli_gitops import apply_saved_plan
        return apply_saved_plan(plan_file, auto_approve, report_file, opts)
    loaded = load_manifest(manifest_path)
    secrets = _secrets(loaded, opts["emulator"], strict=True)
    with open_account(_target(opts, loaded)) as client:
        versions = _key_versions(loaded, client, opts)
        result = _plan(loaded, client, opts, versions)
        if run_apply(result, client, secrets.keys, versions, opts, auto_approve, report_file):
            _verify_converged(loaded, client, opts, versions)


def run_apply(result: Plan, client: ConvaiClient, keys: dict[str, Secret], versions: SyncState,
              opts: dict[str, Any], auto_approve: bool, report_file: str | None) -> bool:
    """Show, confirm, execute, record key versions, report. Exits 1 when a change
    failed; returns whether anything was applied (and so is worth verifying)."""
    _emit_plan(result, "text")
    if not result.empty:
        _confirm(auto_approve)
    report = execute(result, client, keys, parallelism=opts["parallelism"],
                     progress=StderrProgress(sys.stderr))
    record_applied(versions, result, report)
    if versions.worth_saving(result):
        versions.save()
    if report_file:
        _write_json(report_file, report.to_json())
    if result.empty:
        return False
    click.echo(render_report(report), nl=False)
    if not report.ok:
        sys.exit(EXIT_ERROR)
    return True


def _verify_converged(loaded: LoadedManifest, client: ConvaiClient, opts: dict[str, Any],
                      versions: SyncState) -> None:
    """Read the account again: an apply is finished when plan says nothing is left."""
    left = _plan(loaded, client, brakes_off(opts), versions)
    if left.empty:
        click.echo("The account now matches the manifest.")
        return
    click.echo(f"Warning: after apply, the account still differs: {left.summary_line()} "
               "Another client may be changing it; run plan to see the difference.", err=True)
    sys.exit(EXIT_ERROR)


def _write_json(path: str, doc: dict[str, Any]) -> None:
    write_text(path, scrub(json.dumps(doc, indent=2)) + "\n")


def write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, "utf-8")
    except OSError as e:
        raise ConvaiSyncError(f"{path}: cannot write: {e.strerror}") from None


def account_label(opts: dict[str, Any], client: ConvaiClient) -> str:
    """The account a plan was made against, as saved plans and exports name it."""
    return "emulator" if opts["emulator"] else client.base_url


def brakes_off(opts: dict[str, Any]) -> dict[str, Any]:
    """Options for a plan that only reports (drift, the post-apply check): a brake
    would hide the difference it is meant to stop."""
    return {**opts, "allow_empty": True, "allow_deregister": True}


def _target(opts: dict[str, Any], loaded: LoadedManifest) -> Target:
    return _target_for(opts, loaded.manifest.settings.api_dialect)


def _target_for(opts: dict[str, Any], dialect: str) -> Target:
    """The account to open; `dialect` (auto or a name) only picks the emulator's."""
    _configure_logging(opts["verbose"])
    return Target(api_url=opts["api_url"], emulator=opts["emulator"],
                  emulator_dialect="llm-models" if dialect == "auto" else dialect,
                  parallelism=opts["parallelism"],
                  retry=RetryPolicy(max_total=opts["retry_max_time"]))


def _key_versions(loaded: LoadedManifest, client: ConvaiClient, opts: dict[str, Any]) -> SyncState:
    """What earlier applies recorded for this account (in memory only on the emulator)."""
    path = None if opts["emulator"] else Path(opts["state_file"] or default_path(loaded.path))
    return SyncState.load(path, client.base_url)


def _read_live(loaded: LoadedManifest, client: ConvaiClient) -> LiveState:
    live = client.read_state(loaded.manifest.settings.api_dialect)
    log.info("read %d models and %d characters in %d requests (dialect %s)",
             len(live.models), len(live.characters), live.requests, live.dialect)
    return live


def _plan(loaded: LoadedManifest, client: ConvaiClient, opts: dict[str, Any],
          versions: SyncState | None = None, live: LiveState | None = None) -> Plan:
    """The plan from `live` (read now when not given)."""
    versions = versions or _key_versions(loaded, client, opts)
    live = live or _read_live(loaded, client)
    brakes = Brakes(allow_empty=opts["allow_empty"], allow_deregister=opts["allow_deregister"])
    return build_plan(loaded, live, brakes, versions.versions, versions.parked)


def _emit_plan(result: Plan, fmt: str, source: str | None = None, **markdown: Any) -> None:
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    elif fmt == "markdown":
        from .render.markdown import render_plan_markdown
        click.echo(render_plan_markdown(result, source=source, **markdown), nl=False)
    else:
        click.echo(render_plan(result, color=use_color(sys.stdout)), nl=False)


def _secrets(loaded: LoadedManifest, emulator: bool, strict: bool) -> ResolvedSecrets:
    secrets = resolve_secrets(loaded, placeholder=EMULATOR_SECRET if emulator else None)
    if strict and secrets.missing:
        raise secrets.refusal()
    return secrets


def _warn_missing(secrets: ResolvedSecrets) -> None:
    if secrets.missing:
        click.echo("Warning: " + secrets.missing_message().replace("\n", "\nWarning: ") +
                   "\nWarning: apply will refuse to run until these are set.", err=True)


def _confirm(auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise ConvaiSyncError("apply needs confirmation but there is no terminal to ask on; "
                              "review the plan above and pass --auto-approve. Nothing was written.")
    answer = click.prompt("Do you want to perform these actions? Only 'yes' will be accepted",
                          default="", show_default=False, err=True)
    if answer.strip() != "yes":
        raise ConvaiSyncError("apply cancelled; nothing was written.")


def _configure_logging(verbose: int) -> None:
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


def _register_extra_commands() -> None:
    from .cli_gitops import COMMANDS
    from .emulator.cli import emulator_command

    cli.add_command(emulator_command, "emulator")
    for name, command in COMMANDS.items():
        cli.add_command(command, name)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, a pod stopped) stops an apply as Ctrl-C does:
    writes in flight finish, nothing else starts, and the report is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become a message and exit 1, never a traceback."""
    _register_extra_commands()
    try:
        with _sigterm_interrupts():
            cli.main(args=argv, prog_name="convai-sync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted; nothing was written.", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as e:
        e.show()  # a usage error is an error (1): exit 2 means "changes present"
        sys.exit(EXIT_ERROR if isinstance(e, click.UsageError) else e.exit_code)
    except ConvaiSyncError as e:
        click.echo(scrub(f"Error: {e}"), err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted. Run plan to see what is left to do.", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so plainly, never print a secret
        log.debug("internal error", exc_info=True)
        click.echo(scrub(f"Error: internal error ({type(e).__name__}: {e}). This is a bug in "
                         "convai-sync; please report it (run with -vv for the traceback)."), err=True)
        sys.exit(EXIT_ERROR)
