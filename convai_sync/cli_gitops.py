"""The commands of the GitOps loop besides plan/apply -f: `apply PLANFILE`,
`show`, `drift`, `export` and `schema`. Parse, call, render, exit code; the
logic lives in saved_plan.py, drift.py, export.py and schema.py."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .account import EMULATOR_SECRET, open_account
from .cli_common import (EXIT_CHANGES, EXIT_OK, FORMATS, account_label, brake_options,
                         color_option, emit_plan, locked, manifest_option, manifest_secrets,
                         options, plan_text, platform_named, read_options, run_apply,
                         stateless_options, target, verify_converged, write_text)
from .cli_endpoints import before_binding, check_all, endpoint_options
from .cli_markdown import markdown_options, markdown_settings
from .drift import drift_json, drift_text, drifted, unchecked_fields
from .engine import apply_refusal, make_plan, read_live, reporting, sync_state
from .errors import ConvaiSyncError
from .escape import inline
from .export import CONSUMER_CHOICES
from .manifest import load_manifest
from .providers.registry import NAMES
from .render.markdown import render_drift_markdown
from .render.values import count
from .saved_plan import load_saved_plan, read_live_for
from .schema import schema_text


# -- apply PLANFILE -------------------------------------------------------------

def apply_saved_plan(plan_file: str, report_file: str | None, opts: dict[str, Any]) -> None:
    """Apply exactly the saved changes, or refuse (writing nothing) when anything
    the plan was made from has changed. No prompt, as in Terraform: the saved plan
    is what was reviewed and approved."""
    saved = load_saved_plan(plan_file)
    loaded, reasons = saved.check_manifest()
    if reasons:
        raise saved.stale_error(reasons)
    keys = saved.keys(os.environ, EMULATOR_SECRET if opts["emulator"] else None)
    target_platform = platform_named(saved.plan.platform)
    with open_account(target(opts, saved.plan.dialect), target_platform) as client, \
            locked(client, saved.manifest_path, opts):
        state = sync_state(saved.manifest_path, saved.environment, client, options(opts))
        live = read_live_for(saved, client, state, loaded)
        reasons = saved.live_reasons(live)
        if reasons:
            raise saved.stale_error(reasons)
        here = account_label(opts, client)
        if saved.account and saved.account != here:
            click.echo(f"Warning: the plan was made against {inline(saved.account)}; applying it to {here}, "
                       "whose live state matches the plan.", err=True)
        builtins = loaded.desired.builtins if loaded else target_platform.builtins() | saved.builtin_models
        saved.plan.verify_order(live, builtins)
        check = before_binding(loaded, saved.plan, keys, opts)
        if not run_apply(saved.plan, client, keys, state, opts, True, report_file, check):
            return
        if loaded is not None:
            verify_converged(loaded, client, opts, state, saved.plan)
        else:
            click.echo(f"The saved changes were applied. The manifest ({saved.manifest_path}) is not "
                       "here, so convergence was not checked: run plan -f MANIFEST to confirm.")


# -- show -------------------------------------------------------------------------

@click.command("show", short_help="Print a saved plan (from plan --out); no account needed.")
@click.argument("plan_file", metavar="PLANFILE")
@color_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@markdown_options
def show_command(plan_file: str, fmt: str, **opts: Any) -> None:
    """Print a saved plan (from plan --out) without contacting the account."""
    saved = load_saved_plan(plan_file)
    emit_plan(saved.plan, fmt, source=saved.manifest_path, **markdown_settings(opts))


# -- drift ------------------------------------------------------------------------

@click.command("drift", short_help="Report how the account differs from the manifest; exit 0/2/1.")
@manifest_option
@read_options
@brake_options
@color_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--check-endpoints", is_flag=True,
              help="Also check every model's endpoint (as `check` does); a failing one is drift.")
@endpoint_options
@markdown_options
def drift_command(manifest_path: str, fmt: str, check_endpoints: bool, **opts: Any) -> None:
    """Report how the account differs from the manifest; write nothing.
    Exit 0 in sync, 2 drift (or, with --check-endpoints, an endpoint failing), 1 error.
    The brake options say which brakes apply would be run with (drift itself
    always shows every difference)."""
    markdown = markdown_settings(opts)
    loaded = load_manifest(manifest_path)
    endpoints = None
    if check_endpoints:
        endpoints = check_all(loaded, manifest_secrets(loaded, opts["emulator"]).keys, opts)
    with open_account(target(opts, loaded.desired.variant), loaded.platform) as client:
        state = sync_state(loaded.path, loaded.environment, client, options(opts))
        live = read_live(loaded, client, state, options(opts))
        result = make_plan(loaded, client, reporting(options(opts)), state, live)
        refused = apply_refusal(loaded, client, options(opts), state, live)
        caps = client.capabilities()
    unchecked = unchecked_fields(loaded, live, caps)
    if fmt == "json":
        click.echo(json.dumps(drift_json(result, unchecked, manifest_path, refused, endpoints),
                              indent=2))
    elif fmt == "markdown":
        click.echo(render_drift_markdown(result, unchecked, source=manifest_path, refused=refused,
                                         endpoints=endpoints, **markdown), nl=False)
    else:
        click.echo(drift_text(result, unchecked, manifest_path, plan_text(result), refused, endpoints),
                   nl=False)
    sys.exit(EXIT_CHANGES if drifted(result, endpoints) else EXIT_OK)


# -- export -----------------------------------------------------------------------

@click.command("export", short_help="Write a manifest from the live account (adoption).")
@stateless_options
@click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the manifest here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option("--characters", "consumers", type=click.Choice(CONSUMER_CHOICES), default="all",
              show_default=True, help="Which characters (pipelines, assistants) to list: all, or "
              "only those bound to a custom model.")
@click.option("--api-dialect", type=click.Choice(["auto", "llm-models", "custom-llm"]), default="auto",
              show_default=True, help="Convai: which Custom LLM API to read.")
@click.option("--platform", "platform_name", type=click.Choice(NAMES), default="convai",
              show_default=True, help="Which platform's account to adopt.")
def export_command(output: str | None, force: bool, consumers: str, api_dialect: str,
                   platform_name: str, **opts: Any) -> None:
    """Write a manifest from the live account (adoption): every custom model,
    secrets as ${VAR} placeholders, consumers with their model (and temperature)."""
    if output and Path(output).exists() and not force:
        raise ConvaiSyncError(f"{output}: already exists; choose another file or pass --force")
    chosen = platform_named(platform_name)
    with open_account(target(opts, api_dialect), chosen) as client:
        live = client.read_state(api_dialect, None)
        exported = chosen.export(live, account_label(opts, client), consumers)
    if output:
        write_text(output, exported.text)
        click.echo(f"Wrote {output}: {count(len(live.models), 'model')}, "
                   f"{count(exported.consumers, chosen.consumer_noun)}.", err=True)
    else:
        click.echo(exported.text, nl=False)
    for reason in exported.skipped:
        click.echo(f"Warning: {inline(reason)}", err=True)
    if exported.variables:
        click.echo("Set these environment variables (in CI: repository secrets) before apply:", err=True)
        for group, var in exported.variables.items():
            click.echo(f"  {var}  (api_key of model '{group}')", err=True)


# -- schema -----------------------------------------------------------------------

@click.command("schema")
def schema_command() -> None:
    """Print the manifest's JSON Schema (schema/manifest.schema.json)."""
    click.echo(schema_text(), nl=False)


COMMANDS = {"show": show_command, "drift": drift_command, "export": export_command,
            "schema": schema_command}
