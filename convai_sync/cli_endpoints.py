"""Endpoint checks on the command line: `check`, the options apply and drift
share, and apply's check before its first write. Parse, call, render; the
logic lives in endpoint_check.py and preflight.py."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import click

from .account import endpoint_route, open_account
from .cli_common import (EXIT_ERROR, EXIT_OK, manifest_option, manifest_secrets, read_options,
                         options, target)
from .endpoint_check import (CheckSettings, EndpointHealth, Health, check_endpoints, health_lines,
                             health_summary)
from .engine import read_live, sync_state
from .errors import ConvaiSyncError
from .manifest import LoadedManifest, load_manifest
from .plan import Plan
from .preflight import preflight
from .render.values import count
from .secrets import Secret, scrub


def endpoint_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--endpoint-timeout", type=click.FloatRange(0.1, 600), default=10.0,
                     show_default=True, metavar="SECONDS",
                     help="Give up on one endpoint request after this long (unreachable).")(f)
    f = click.option("--slow-after", type=click.FloatRange(0, 600), default=2.0, show_default=True,
                     metavar="SECONDS", help="A one-token reply slower than this is 'slow'.")(f)
    return f


def skip_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--skip-check", "skip_check", multiple=True, metavar="MODEL",
                     help="Do not check this model's endpoint before binding (it is down on "
                          "purpose); repeatable.")(f)
    f = click.option("--no-endpoint-check", is_flag=True, envvar="CONVAI_SYNC_NO_ENDPOINT_CHECK",
                     help="Check no endpoint before binding (e.g. where this machine cannot reach "
                          "the endpoints the platform can) [env CONVAI_SYNC_NO_ENDPOINT_CHECK=1].")(f)
    return f


def settings(opts: dict[str, Any], route: Callable[[str], str],
             loaded: LoadedManifest | None = None) -> CheckSettings:
    skip = frozenset(opts.get("skip_check") or ())
    if loaded is not None:
        _known_models(skip, loaded)
    return CheckSettings(timeout=opts["endpoint_timeout"], slow=opts["slow_after"], route=route,
                         skip=skip)


def _known_models(skip: frozenset[str], loaded: LoadedManifest) -> None:
    declared = {m.name for m in loaded.desired.models}
    unknown = sorted(skip - declared)
    if unknown:
        raise ConvaiSyncError(f"--skip-check {unknown[0]}: {loaded.path} declares no model "
                              f"'{unknown[0]}'; its models are: {', '.join(sorted(declared)) or 'none'}")


def check_all(loaded: LoadedManifest, keys: Mapping[str, Sequence[Secret]],
              opts: dict[str, Any]) -> list[EndpointHealth]:
    """Every declared model's endpoint, concurrently."""
    with endpoint_route(opts["emulator"]) as route:
        return check_endpoints(loaded.platform.endpoints(loaded.desired), keys, settings(opts, route))


@click.command("check", short_help="Check the account key and every model's endpoint; exit 0 or 1.")
@manifest_option
@read_options
@endpoint_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="One line per model, or a JSON document for scripts.")
def check_command(manifest_path: str, fmt: str, **opts: Any) -> None:
    """Check the account key, then every model's endpoint as the platform calls
    it (GET /models, a one-token chat completion), concurrently. Exit 0 when
    all are healthy, 1 otherwise. Keys are never printed."""
    loaded = load_manifest(manifest_path)
    resolved = manifest_secrets(loaded, opts["emulator"])
    account = _check_account(loaded, opts)
    results = check_all(loaded, resolved.keys, opts)
    healthy = account.ok and all(r.health is Health.OK for r in results)
    if fmt == "json":
        click.echo(json.dumps({"format_version": 1, "manifest": manifest_path, "healthy": healthy,
                               "account": {"ok": account.ok, "message": account.message},
                               "endpoints": [r.to_json() for r in results]}, indent=2))
    else:
        click.echo(f"Account: {account.message}")
        click.echo(f"Endpoints of {manifest_path}, checked concurrently:")
        for line in health_lines(results):
            click.echo(line)
        click.echo(health_summary(results))
    sys.exit(EXIT_OK if healthy else EXIT_ERROR)


@dataclass(frozen=True)
class _Account:
    ok: bool
    message: str


def _check_account(loaded: LoadedManifest, opts: dict[str, Any]) -> _Account:
    """One read of the account (the engine's own): the account key works."""
    title = loaded.platform.title
    try:
        with open_account(target(opts, loaded.desired.variant), loaded.platform) as client:
            live = read_live(loaded, client, sync_state(loaded.path, loaded.environment, client, options(opts)),
                             options(opts))
            where = "the emulator" if opts["emulator"] else client.base_url
    except ConvaiSyncError as e:
        return _Account(False, scrub(f"{title}: failed: {e}"))
    noun = loaded.platform.consumer_noun
    return _Account(True, f"{title} at {where}: key accepted (read "
                          f"{count(len(live.models), 'model')}, {count(len(live.consumers), noun)}).")


def before_binding(loaded: LoadedManifest | None, plan: Plan,
                   keys: Mapping[str, Sequence[Secret] | Secret],
                   opts: dict[str, Any]) -> Callable[[], None]:
    """apply's check of the endpoints its plan moves consumers onto, run after the
    plan is shown and before anything is asked or written."""
    def run() -> None:
        if opts["no_endpoint_check"] or plan.empty:
            return
        if loaded is None:
            click.echo("Warning: the manifest is not here, so no endpoint was checked before "
                       "binding; run check -f MANIFEST to check them.", err=True)
            return
        with endpoint_route(opts["emulator"]) as route:
            results = preflight(plan, loaded.platform.endpoints(loaded.desired), keys,
                                settings(opts, route, loaded))
        for r in results:
            if not r.failed and r.health is not Health.OK:
                click.echo(f"Note: model '{r.endpoint.model}' endpoint {r.health.value}: {r.why}",
                           err=True)
        if results:
            click.echo(f"Checked the endpoints {plan.noun}s will move onto. "
                       f"{health_summary(results)}", err=True)
    return run
