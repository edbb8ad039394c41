"""`ping` (does the URL answer, does it take the key?) and `import` (add live
models to a manifest). Parse, call, render, exit code; the logic of import is
in importer.py, ping is one read by the platform's client."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .account import open_account
from .cli_common import platform_named, stateless_options, target, write_text
from .errors import ConvaiSyncError
from .importer import import_models
from .manifest import load_manifest
from .providers.base import Platform
from .providers.registry import NAMES
from .render.values import count


@click.command("ping", short_help="Check the API URL and key with one read; exit 0 or 1.")
@click.option("-f", "--file", "manifest_path", metavar="MANIFEST", type=click.Path(dir_okay=False),
              help="Take the platform (and Convai's api_dialect) from this manifest.")
@click.option("--platform", "platform_name", type=click.Choice(NAMES), default=None,
              help="Which platform's API to check [default: the manifest's, else convai].")
@stateless_options
def ping_command(manifest_path: str | None, platform_name: str | None, **opts: Any) -> None:
    """Check that the API URL answers and takes the account key, with one read
    (Convai with api_dialect auto: two on a custom-llm account) and nothing
    else. Exit 0 when it does, 1 (with the API's answer) when not."""
    chosen, variant = _platform(manifest_path, platform_name)
    with open_account(target(opts, variant), chosen) as client:
        seen = client.ping(variant)
        click.echo(f"OK: {client.base_url} answered and took the {chosen.title} account key "
                   f"({chosen.env_key}): {seen}; {count(client.requests, 'request')}, nothing written.")


@click.command("import", short_help="Add live models, by name, to a manifest (like export).")
@click.option("-f", "--file", "manifest_path", required=True, metavar="MANIFEST",
              type=click.Path(dir_okay=False), help="The manifest to add the models to.")
@click.option("--platform", "platform_name", type=click.Choice(NAMES), default=None,
              help="The manifest's platform (a check: the manifest says which it is).")
@click.argument("names", nargs=-1, required=True, metavar="MODEL_NAME...")
@stateless_options
def import_command(manifest_path: str, platform_name: str | None, names: tuple[str, ...],
                   **opts: Any) -> None:
    """Add live models, by name, to an existing manifest, as export would write
    them, leaving the rest of the file as it is. Nothing in the account changes."""
    loaded = load_manifest(manifest_path)
    chosen, variant = _platform(manifest_path, platform_name)
    with open_account(target(opts, variant), chosen) as client:
        live = client.read_state(variant, None)
    exported = chosen.export(live, "the account", "all")
    done = import_models(loaded, Path(manifest_path).read_text("utf-8"), exported, list(names))
    write_text(manifest_path, done.text)
    click.echo(f"Added {', '.join(names)} to {manifest_path}; review it, then plan. Set these "
               "environment variables (in CI: repository secrets) before apply:", err=True)
    for model, var in done.variables.items():
        click.echo(f"  {var}  (key of model '{model}')", err=True)


def _platform(manifest_path: str | None, name: str | None) -> tuple[Platform, str]:
    """The platform and API variant: from the manifest, checked against --platform."""
    if manifest_path is None:
        return platform_named(name or "convai"), "auto"
    desired = load_manifest(manifest_path).desired
    if name is not None and name != desired.platform:
        raise ConvaiSyncError(f"{manifest_path} is a {desired.platform} manifest, not {name}; "
                              "drop --platform or choose the other manifest")
    return platform_named(desired.platform), desired.variant
