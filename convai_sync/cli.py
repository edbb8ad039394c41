"""Command-line interface: parse, call the engine, render, exit code. No logic here."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import sys
import threading
from typing import Any, Iterator

import click

from . import __version__
from .account import open_account
from .cli_common import (EXIT_CHANGES, EXIT_ERROR, EXIT_OK, FORMATS, account_label, account_options,
                         brake_options, color_option, emit_plan, locked, manifest_option,
                         manifest_secrets, options, platform_named, read_options, require_keys,
                         run_apply, scope_options, target, verify_converged, warn_missing,
                         write_json)
from .cli_endpoints import before_binding, check_command, endpoint_options, skip_options
from .cli_gitops import COMMANDS, apply_saved_plan
from .cli_markdown import markdown_options, markdown_settings
from .cli_tools import import_command, ping_command
from .emulator.cli import emulator_command
from .engine import make_plan, read_live, sync_state
from .errors import ConvaiSyncError, ManifestError
from .manifest import load_manifest
from .render.values import count
from .render.markdown import render_failure_markdown
from .saved_plan import saved_document
from .escape import inline, terminal
from .secrets import scrub
from .validation import validation_report

log = logging.getLogger("convai_sync")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="convai-sync")
def cli() -> None:
    """Terraform-style GitOps for the custom LLMs behind Convai characters, LangBot
    pipelines and Vapi assistants."""


@cli.command()
@click.option("-f", "--file", "manifest_paths", required=True, multiple=True, metavar="MANIFEST",
              type=click.Path(dir_okay=True), help="The manifest (YAML); repeat for several.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the verdict and every problem (file, line, message) on stdout; an "
                   "array of them for several manifests.")
def validate(manifest_paths: tuple[str, ...], fmt: str) -> None:
    """Check manifests offline: syntax, types, references, includes. Exit 0 if all are valid."""
    if fmt == "json":
        reports = [validation_report(p) for p in manifest_paths]
        click.echo(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
        sys.exit(EXIT_OK if all(r["valid"] for r in reports) else EXIT_ERROR)
    problems = []
    for path in manifest_paths:
        try:
            desired = load_manifest(path).desired
        except ManifestError as e:
            problems += e.problems
            continue
        noun = platform_named(desired.platform).consumer_noun
        click.echo(f"{path}: valid ({count(len(desired.models), 'model')}, "
                   f"{count(len(desired.consumers), noun)})")
    if problems:
        raise ManifestError(problems)


@cli.command()
@manifest_option
@read_options
@brake_options
@scope_options
@color_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), metavar="PLANFILE",
              help="Also save the plan for `apply PLANFILE` (JSON; holds no secret).")
@markdown_options
def plan(manifest_path: str, fmt: str, detailed_exitcode: bool, out_file: str | None,
         **opts: Any) -> None:
    """Show what apply would change, in the order it would change it."""
    markdown = markdown_settings(opts)
    try:
        _plan(manifest_path, fmt, detailed_exitcode, out_file, markdown, opts)
    except ConvaiSyncError as e:
        if fmt == "markdown":  # the PR comment says why, escaped for Markdown
            click.echo(render_failure_markdown(scrub(str(e)), source=manifest_path,
                                               full_plan_url=markdown.get("full_plan_url")), nl=False)
        raise


def _plan(manifest_path: str, fmt: str, detailed_exitcode: bool, out_file: str | None,
          markdown: dict[str, Any], opts: dict[str, Any]) -> None:
    loaded = load_manifest(manifest_path)
    resolved = manifest_secrets(loaded, opts["emulator"])
    with open_account(target(opts, loaded.desired.variant), loaded.platform) as client:
        state = sync_state(loaded.path, loaded.environment, client, options(opts))
        live = read_live(loaded, client, state, options(opts))
        result = make_plan(loaded, client, options(opts), state, live)
        account = account_label(opts, client)
    emit_plan(result, fmt, source=manifest_path, **markdown)
    if out_file:
        write_json(out_file, saved_document(result, loaded, live, account))
        click.echo(f"Saved the plan to {out_file}; apply exactly it with: convai-sync apply {out_file}",
                   err=True)
    warn_missing(resolved, result)
    sys.exit(EXIT_CHANGES if detailed_exitcode and not result.empty else EXIT_OK)


@cli.command()
@click.argument("plan_file", required=False, metavar="[PLANFILE]")
@click.option("-f", "--file", "manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=True),
              help="The manifest (YAML); or pass a saved PLANFILE instead.")
@account_options
@brake_options
@scope_options
@color_option
@endpoint_options
@skip_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking (apply PLANFILE never asks).")
@click.option("--report-file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write the apply report (every change: done, failed, not attempted) as JSON.")
@click.option("--force-unlock", is_flag=True,
              help="Break another apply's lock on this account (only when it is surely not running).")
def apply(manifest_path: str | None, auto_approve: bool, report_file: str | None,
          plan_file: str | None = None, **opts: Any) -> None:
    """Plan, confirm, then apply phase by phase. With PLANFILE (from plan --out):
    apply exactly that plan without asking (it was reviewed), or refuse, writing
    nothing, if the account or the manifest changed. Before the first write, the
    endpoints consumers will move onto are checked: one that fails refuses the
    apply, writing nothing (see --skip-check)."""
    if (manifest_path is None) == (plan_file is None):
        raise click.UsageError("pass exactly one of -f MANIFEST and a saved PLANFILE")
    if plan_file is not None:
        if opts["targets"] or opts["replace"]:
            raise click.UsageError("--target and --replace shape a plan: pass them to plan "
                                   "--out, not to apply PLANFILE (which applies exactly the saved plan)")
        return apply_saved_plan(plan_file, report_file, opts)
    loaded = load_manifest(manifest_path)
    resolved = manifest_secrets(loaded, opts["emulator"])
    with open_account(target(opts, loaded.desired.variant), loaded.platform) as client, \
            locked(client, loaded.path, opts):
        state = sync_state(loaded.path, loaded.environment, client, options(opts))
        result = make_plan(loaded, client, options(opts), state)
        require_keys(resolved, result)
        check = before_binding(loaded, result, resolved.keys, opts)
        if run_apply(result, client, resolved.keys, state, opts, auto_approve, report_file, check):
            verify_converged(loaded, client, opts, state, result)


def _register_extra_commands() -> None:
    cli.add_command(emulator_command, "emulator")
    cli.add_command(ping_command, "ping")
    cli.add_command(import_command, "import")
    cli.add_command(check_command, "check")
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
            code = cli.main(args=argv, prog_name="convai-sync", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(N) inside a command (the emulator's errors)
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted; nothing was written.", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as e:
        e.show()  # a usage error is an error (1): exit 2 means "changes present"
        sys.exit(EXIT_ERROR if isinstance(e, click.UsageError) else e.exit_code)
    except ConvaiSyncError as e:
        click.echo(terminal(scrub(f"Error: {e}")), err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted. Run plan to see what is left to do.", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so plainly, never print a secret
        log.debug("internal error", exc_info=True)
        click.echo(inline(scrub(f"Error: internal error ({type(e).__name__}: {e}). This is a bug in "
                                "convai-sync; please report it (run with -vv for the traceback).")),
                   err=True)
        sys.exit(EXIT_ERROR)


def run_captured(argv: list[str]) -> tuple[int, str, str]:
    """convai-sync in this process, exactly as the console script runs it:
    (exit code, stdout, stderr). For callers that run many commands (the GitHub
    Action's step, benchmarks) without an interpreter start each."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()
