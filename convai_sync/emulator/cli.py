"""`convai-sync emulator`: serve an emulated Convai account until Ctrl-C or SIGTERM."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import click

from convai_sync.emulator.faults import Faults
from convai_sync.emulator.seedfile import read_seed_file
from convai_sync.errors import ConvaiSyncError
from convai_sync.providers.convai.emulator.quirks import UNNAMED_DISPLAYS, Quirks
from convai_sync.providers.convai.emulator.seed import DIALECTS, load_seed_file
from convai_sync.providers.registry import NAMES, platform


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the serve loop like Ctrl-C does."""


def _nonempty_or_none(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value:
        raise click.BadParameter("must not be empty")
    return value


SEED_HELP = """\b
Seed files (--seed FILE), YAML or JSON:
  convai:  {dialect?, models: [{model_group_name, model_name, base_url,
           api_key, display_name?, is_uncensored?}], characters:
           [{character_id, character_name, model_group_name, temperature}]}
  langbot: {models: [{name, base_url, api_keys, requester?, abilities?,
           extra_args?, context_length?, uuid?}], pipelines: [{name, model
           (a model name or uuid), uuid?, prompt?}]}
  vapi:    {credentials: [{name, apiKey, id?, provider?}], assistants:
           [{name, id?, model: {...}, credentialIds?}]}

\b
Add characters to a running Convai emulator (Convai makes them in its UI, so
the emulator has its own route for it; same account key):
  curl -X POST $CONVAI_API_URL/_emulator/characters \\
    -H "CONVAI-API-KEY: $CONVAI_API_KEY" -H 'Content-Type: application/json' \\
    -d '{"characters": [{"character_id": "c1", "character_name": "Mara",
         "model_group_name": "gpt-4o-mini", "temperature": 0.5}]}'
"""


@click.command("emulator", epilog=SEED_HELP,
               short_help="Serve an emulated Convai, LangBot or Vapi account over HTTP.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--seed", "seed_path", type=click.Path(path_type=Path), metavar="FILE",
              help="YAML or JSON account state to start from (overrides --demo).")
@click.option("--platform", "platform_name", type=click.Choice(NAMES), default="convai",
              show_default=True, help="Which platform's API to serve.")
@click.option("--dialect", type=click.Choice(DIALECTS), default=None,
              help="Convai: API dialect to serve [default: the seed's, else llm-models].")
@click.option("--account-key", default=None, callback=_nonempty_or_none,
              help="The key the emulator accepts [default: the platform's key variable, "
                   "CONVAI_API_KEY, LANGBOT_API_KEY or VAPI_API_KEY, else emulator-key].")
@click.option("--demo/--empty", default=True, show_default=True,
              help="Start from the demo account or from an empty one.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability that a request fails before doing anything.")
@click.option("--fault-after-commit", type=click.FloatRange(0, 1), default=0.0,
              show_default=True, help="Probability that a write commits but its reply fails.")
@click.option("--fault-seed", type=int, default=None, help="Seed for repeatable faults.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Delay before every reply.")
@click.option("--max-inflight", type=click.IntRange(min=1), default=None,
              help="Answer 429 when this many requests are already being served.")
@click.option("--retry-after", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Retry-After seconds on 429 replies.")
@click.option("--lean-character-list", is_flag=True,
              help="Convai: /character/list leaves out each character's model and "
                   "temperature, as the real API may; clients then read them with /character/get.")
@click.option("--lean-character-get", is_flag=True,
              help="Convai: /character/get returns only the six documented fields "
                   "(no model or temperature).")
@click.option("--no-retry-after", is_flag=True,
              help="Convai: 429 replies carry no Retry-After header.")
@click.option("--read-lag", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Convai: seconds before a write shows in lists and gets (eventual consistency).")
@click.option("--unnamed-display", type=click.Choice(UNNAMED_DISPLAYS), default="code",
              show_default=True, help="Convai: display_name of a model registered without one: "
                                      "its model_group_name, its model_name, or blank.")
@click.option("--errors-in-200", is_flag=True,
              help="Convai: refusals (400/404/409) arrive as HTTP 200 with the error body.")
@click.pass_context
def emulator_command(ctx: click.Context, host: str, port: int, seed_path: Path | None,
                     platform_name: str, dialect: str | None, account_key: str | None, demo: bool,
                     fault_rate: float, fault_after_commit: float, fault_seed: int | None,
                     latency_ms: float, max_inflight: int | None, retry_after: float,
                     lean_character_list: bool, lean_character_get: bool, no_retry_after: bool,
                     read_lag: float, unnamed_display: str, errors_in_200: bool) -> None:
    """Run an emulated Convai, LangBot or Vapi account over HTTP, to try
    convai-sync without one."""
    target = platform(platform_name)
    faults = Faults(rate=fault_rate, after_commit=fault_after_commit, seed=fault_seed,
                    latency_ms=latency_ms, retry_after=retry_after, max_inflight=max_inflight)
    from_env = account_key is None and bool(os.environ.get(target.env_key))
    key = account_key or os.environ.get(target.env_key) or target.emulator_key
    try:
        seed, origin = _seed(seed_path, demo, platform_name)
        extra = {"character_list_config": not lean_character_list,
                 "character_get_config": not lean_character_get,
                 "quirks": Quirks(retry_after=not no_retry_after, read_lag=read_lag,
                                  unnamed_display=unnamed_display, errors_in_200=errors_in_200),
                 } if platform_name == "convai" else {}
        variant = dialect or (seed or {}).get("dialect") or "llm-models"
        emu = target.emulator(variant, seed, faults=faults, key=key, **extra)
        url = emu.start(host, port)
    except ConvaiSyncError as exc:
        hint = " (choose another --port, or --port 0 for a free one)" if "in use" in str(exc) else ""
        click.echo(f"Error: {exc}{hint}", err=True)
        ctx.exit(1)
    key_hint = "" if from_env else f" {target.env_key}={key}"  # never echo a real key
    name = f"{target.title} emulator" + (f" ({variant})" if platform_name == "convai" else "")
    click.echo(f"{name} listening on {url} ({origin})", err=True)
    if fault_rate or fault_after_commit or latency_ms or max_inflight:
        click.echo(f"  faults: {faults}", err=True)
    click.echo("Point convai-sync at it from another shell:", err=True)
    click.echo(f"  export {target.env_url}={url}{key_hint}", err=True)
    if from_env:
        click.echo(f"  (it accepts the {target.env_key} already in your environment)", err=True)
    click.echo("Stop with Ctrl-C.", err=True)
    _serve_until_stopped()
    emu.stop()
    click.echo("Emulator stopped.", err=True)


def _seed(path: Path | None, demo: bool, platform_name: str) -> tuple[dict | None, str]:
    """(seed, where it came from); None is the platform's demo account."""
    if path is not None:
        data = load_seed_file(path) if platform_name == "convai" else read_seed_file(path)
        return data, str(path)
    if demo:
        return None, "demo seed"
    return {}, "empty account"


def _serve_until_stopped() -> None:
    def on_term(signum: int, frame: object) -> None:
        raise _Stop()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
