"""Terraform-style plan text for a terminal or a CI log."""
from __future__ import annotations

import os
import sys
from typing import IO, Any

import click

from ..plan import Change, Phase, Plan
from ..executor import DONE, FAILED, NOT_ATTEMPTED
from .values import count, headline, label, show

_SYMBOL = {"register": ("+", "green"), "update": ("~", "yellow"),
           "replace": ("-/+", "magenta"), "deregister": ("-", "red")}


def use_color(stream: IO[str]) -> bool:
    """Only on a terminal, and never with NO_COLOR or --no-color."""
    ctx = click.get_current_context(silent=True)
    off = ctx is not None and ctx.find_root().meta.get("no_color", False)
    return stream.isatty() and "NO_COLOR" not in os.environ and not off


def render_plan(plan: Plan, color: bool = False, warnings: bool = True) -> str:
    """The plan as text; `warnings=False` leaves them out (the CLI prints them
    on stderr, with the other warnings)."""
    paint = (lambda text, fg: click.style(text, fg=fg)) if color else (lambda text, fg: text)
    out: list[str] = []
    for warning in plan.warnings if warnings else []:
        out.append(paint(f"Warning: {warning}", "yellow"))
    if plan.warnings and warnings:
        out.append("")
    if plan.empty:
        out.append(paint(plan.summary_line(), "green"))
        return "\n".join(out + _unchecked(plan)) + "\n"
    where = f"dialect: {plan.dialect}" if plan.platform == "convai" else f"platform: {plan.platform}"
    out.append(f"convai-sync will perform these actions, in this order ({where}):")
    for phase, group in plan.phases():
        out.append("")
        out.append(paint(f"Phase {plan.phase_number(phase)}: {plan.phase_title(phase)}", "cyan"))
        for change in group:
            out.append("")
            out.extend(_change(change, plan, paint))
    out.append("")
    out.append(click.style(plan.summary_line(), bold=True) if color else plan.summary_line())
    return "\n".join(out + _keys_sent(plan) + _unchecked(plan)) + "\n"


def _keys_sent(plan: Plan) -> list[str]:
    """Which variables apply will read (it refuses if one of these is unset)."""
    wanted = plan.meta.get("key_variables") or {}
    if not wanted:
        return []
    by_var: dict[str, list[str]] = {}
    for model, variables in wanted.items():
        for var in variables:
            by_var.setdefault(var, []).append(model)
    names = ", ".join(f"{var} ({', '.join(models)})" for var, models in by_var.items())
    return [f"Apply sends keys, read from these environment variables: {names}."]


def _unchecked(plan: Plan) -> list[str]:
    """Model fields the API never returns: the plan cannot see them live."""
    fields = plan.meta.get("unchecked_fields") or []
    if not fields:
        return []
    return [f"Not checked live (the {plan.dialect} API does not return them): {', '.join(fields)}; "
            "those it can set are compared with the value last applied (state file)."]


def _change(change: Change, plan: Plan, paint: Any) -> list[str]:
    symbol, fg = _SYMBOL[change.action]
    lines = [f"  # {headline(change, plan.noun, plan.model_ref)}",
             paint(f"{symbol:>3} {label(change, plan.noun)} {{", fg)]
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
        if change.action == "update" and str(after.get(key, "")).startswith("(sensitive, version"):
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
        return f"Apply complete: {count(report.count(DONE), 'change')} applied.\n"
    lines = []
    for o in report.outcomes:
        detail = f": {o.error}" if o.error else ""
        lines.append(f"  {o.status:<13} {o.change.action:<10} {label(o.change, report.noun)}{detail}")
    stranded = [label(o.change, report.noun) for o in report.outcomes
                if o.status != DONE and o.change.phase == Phase.RESTORE and o.change.unmanaged]
    if stranded:
        lines.append(f"Note: these {report.noun}s are not in the manifest; they were parked on the fallback "
                     "model and were not moved back yet. The state file records them and the next "
                     "apply moves them back (if that file is not kept between runs, declare them "
                     "under characters, or move them back by hand): " + ", ".join(stranded))
    counts = (f"{report.count(DONE)} done, {report.count(FAILED)} failed, "
              f"{report.count(NOT_ATTEMPTED)} not attempted.")
    if report.interrupted:
        head = (f"Apply interrupted: {counts} The writes already sent were finished, nothing "
                "else was started; run apply again to finish: it picks up from the live state.")
    else:
        head = (f"Apply failed: {counts} Nothing after the failed phase ran; "
                "fix the cause and run apply again: it picks up from the live state.")
    return head + "\n" + "\n".join(lines) + "\n"


def stderr_color() -> bool:
    return use_color(sys.stderr)
