"""The --format markdown options shared by plan, show and drift."""
from __future__ import annotations

from typing import Any, Callable

import click

from .errors import ConvaiSyncError
from .render.markdown import DEFAULT_HINT, DEFAULT_LIMIT

MIN_CHARS = 1000


def markdown_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--max-chars", type=click.IntRange(0), default=DEFAULT_LIMIT, show_default=True,
                     help="Cut --format markdown below this many characters (GitHub comments hold "
                          "65,536); 0 never cuts.")(f)
    f = click.option("--full-plan-url", metavar="URL",
                     help="With --format markdown: where a cut document says the full plan is "
                          "(e.g. the workflow run).")(f)
    return f


def markdown_settings(opts: dict[str, Any]) -> dict[str, Any]:
    """Pop the markdown options out of a command's keyword arguments."""
    limit, url = opts.pop("max_chars"), opts.pop("full_plan_url")
    if 0 < limit < MIN_CHARS:
        raise ConvaiSyncError(f"--max-chars {limit} is too small; use at least {MIN_CHARS} "
                              "(or 0 for no limit)")
    return {"limit": limit, "full_plan_url": url, "full_plan_hint": DEFAULT_HINT}
