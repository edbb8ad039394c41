"""Terraform-style plan text for a terminal or a CI log."""
from __future__ import annotations

import os
import sys
from typing import IO, Any

import click

from ..plan import Change, Phase, Plan
from .values import describe_target, show

_SYMBOL = {"register": ("+", "green"), "update": ("~", "yellow"),
           "replace": ("-/+", "magenta"), "deregister": ("-", "red")}
_VERB = {"register": "will be registered", "update": "will be updated in place",
         "replace": "must be replaced", "deregister": "will be deregistered"}


def use_color(stream: IO[str]) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def render_plan(plan: Plan, color: bool = False) -> str:
    paint = (lambda text, fg: click.style(text, fg=fg)) if color else (lambda text, fg: text)
    out: list[str] = []
    for warning in plan.warnings:
        out.append(paint(f"Warning: {warning}", "yellow"))
    if plan.warnings:
        out.append("")
    if plan.empty:
        out.append(paint(plan.summary_line(), "green"))
        return "\n".join(out) + "\n"
    out.append(f"convai-sync will perform these actions, in this order "
               f"(dialect: {plan.dialect}):")
    total = len(list(plan.phases()))
    for number, (phase, group) in enumerate(plan.phases(), 1):
        out.append("")
        out.append(paint(f"Phase {number}/{total}: {phase.title}", "cyan"))
        for change in group:
            out.append("")
            out.extend(_change(change, paint))
    out.append("")
    out.append(click.style(plan.summary_line(), bold=True) if color else plan.summary_line())
    return "\n".join(out) + "\n"


def _change(change: Change, paint: Any) -> list[str]:
    symbol, fg = _SYMBOL[change.action]
    label = describe_target(change.resource, change.id, change.name)
    verb = _VERB[change.action]
    if change.resource == "character":
        verb = "will be rebound" if "model_group_name" in change.fields else "will be updated"
    why = f" ({change.reason})" if change.reason else ""
    lines = [f"  # {label} {verb}{why}", paint(f"{symbol:>3} {label} {{", fg)]
    width = max((len(k) for k in _rows(change)), default=0)
    for key, (mark, text) in _rows(change).items():
        lines.append(paint(f"      {mark} {key.ljust(width)} = {text}", _SYMBOL_COLORS.get(mark, fg)))
    lines.append("    }")
    return lines


_SYMBOL_COLORS = {"+": "green", "-": "red", "~": "yellow"}


def _rows(change: Change) -> dict[str, tuple[str, str]]:
    before, after = change.before or {}, change.after or {}
    if change.action == "register":
        return {k: ("+", show(v)) for k, v in after.items()}
    if change.action == "deregister":
        return {k: ("-", show(v)) for k, v in before.items()}
    rows: dict[str, tuple[str, str]] = {}
    keys = list(after) if change.action == "replace" else list(change.fields)
    for key in keys:
        if key == "api_key" and change.action == "update":
            rows[key] = ("~", show(after.get(key)))  # "(sensitive, version 1 → 2)"
        elif key in change.fields and key in before:
            note = "  # forces replacement" if key in change.forces_replace else ""
            rows[key] = ("~", f"{show(before.get(key))} -> {show(after.get(key))}{note}")
        elif key in change.fields:
            rows[key] = ("~" if change.action == "update" else "+", show(after.get(key)))
        else:
            rows[key] = (" ", show(after.get(key)))
    return rows


def render_report(report: Any) -> str:
    """The apply report: what was done, what failed, what was not attempted."""
    if report.ok:
        return f"Apply complete: {report.count('done')} changes applied.\n"
    lines = []
    for o in report.outcomes:
        label = describe_target(o.change.resource, o.change.id, o.change.name)
        detail = f": {o.error}" if o.error else ""
        lines.append(f"  {o.status:<13} {o.change.action:<10} {label}{detail}")
    stranded = [describe_target(o.change.resource, o.change.id, o.change.name) for o in report.outcomes
                if o.status != "done" and o.change.phase == Phase.RESTORE
                and o.change.unmanaged]
    if stranded:
        lines.append("Note: these characters are not in the manifest; they were parked on the fallback "
                     "model and were not moved back yet. The state file records them and the next "
                     "apply moves them back (if that file is not kept between runs, declare them "
                     "under characters, or move them back by hand): " + ", ".join(stranded))
    counts = (f"{report.count('done')} done, {report.count('failed')} failed, "
              f"{report.count('not attempted')} not attempted.")
    if report.interrupted:
        head = (f"Apply interrupted: {counts} The writes already sent were finished, nothing "
                "else was started; run apply again to finish: it picks up from the live state.")
    else:
        head = (f"Apply failed: {counts} Nothing after the failed phase ran; "
                "fix the cause and run apply again: it picks up from the live state.")
    return head + "\n" + "\n".join(lines) + "\n"


def stderr_color() -> bool:
    return use_color(sys.stderr)
