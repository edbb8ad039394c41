"""A plan (or a drift report) as Markdown for a pull-request comment, an issue
or a job summary: status and summary visible, every change folded in
<details>, a loud alert when models go away, and a hidden marker so a workflow
can find and update its own comment.

Long documents are cut below `limit` characters (GitHub refuses comments over
65,536) between two changes, never inside an HTML tag or a code fence, with a
note saying where the full plan is.
"""
from __future__ import annotations

from typing import Callable

from ..drift import Unchecked, would_apply
from ..escape import code_span, fence, inline, markdown
from ..endpoint_check import EndpointHealth, health_summary
from ..plan import Change, Plan
from ..providers.registry import platform
from .values import count, headline, show

PLAN_MARKER = "<!-- convai-sync:plan -->"
DRIFT_MARKER = "<!-- convai-sync:drift -->"
GITHUB_LIMIT = 65_536
DEFAULT_LIMIT = 65_000  # leaves room for a footer a workflow may add
DEFAULT_HINT = "The full plan is in the job summary of the workflow run that wrote this comment."
MAX_LISTED = 20

_VERBS = {"replace": "must be replaced (deregister, then register)"}


def render_plan_markdown(plan: Plan, *, source: str | None = None, limit: int | None = DEFAULT_LIMIT,
                         full_plan_hint: str = DEFAULT_HINT, full_plan_url: str | None = None) -> str:
    """The plan as a PR comment. `limit=None` (or 0) never cuts."""
    title = "convai-sync plan" + (f" for {_code(source)}" if source else "")
    if plan.empty:
        status = "\u2705 No changes. The account matches the manifest."
    else:
        status = f"{_icon(plan)} **{count(len(plan.changes), 'change')} to apply** " \
                 f"({_variant(plan)})"
    return _document(PLAN_MARKER, title, status, plan, [], limit, full_plan_hint, full_plan_url)


def render_drift_markdown(plan: Plan, unchecked: list[Unchecked], *, source: str | None = None,
                          limit: int | None = DEFAULT_LIMIT, full_plan_hint: str = DEFAULT_HINT,
                          full_plan_url: str | None = None, refused: list[str] = (),
                          endpoints: list[EndpointHealth] | None = None) -> str:
    """A drift report: what applying the manifest would change now."""
    where = _code(source) if source else "the manifest"
    title = "convai-sync drift" + (f" for {_code(source)}" if source else "")
    if plan.empty and any(r.failed for r in endpoints or ()):
        status = (f"\u26a0\ufe0f **In sync, but an endpoint is failing.** The account matches "
                  f"{where}; fix the endpoint, or move its {plan.noun}s to another model.")
    elif plan.empty:
        status = f"\u2705 **In sync.** The account matches {where}."
    else:
        status = (f"\u26a0\ufe0f **Drift detected:** the account differs from {where} in "
                  f"{count(len(plan.changes), 'change')} ({_variant(plan)}). Run apply "
                  "to bring it back, or change the manifest to accept what changed.")
        if refused:
            status += " " + _escape(would_apply(list(refused)))
    if endpoints is not None:
        status += "\n\n" + "\n".join(_endpoint_lines(endpoints, plan.noun))
    footer = _unchecked_lines(unchecked)
    return _document(DRIFT_MARKER, title, status, plan, footer, limit, full_plan_hint, full_plan_url)


def render_failure_markdown(error: str, *, source: str | None = None,
                            full_plan_url: str | None = None, limit: int | None = DEFAULT_LIMIT) -> str:
    """A plan that failed, as the same sticky PR comment. The error quotes values
    from the pull request and the account, so it goes in a fence none of its
    lines can close: nothing in it renders (no heading, mention, image or link)."""
    title = "convai-sync plan" + (f" for {_code(source)}" if source else "")
    lines = error.splitlines()
    if limit and len(error) > limit // 2:
        lines = error[:limit // 2].splitlines() + ["(cut; the whole error is in the workflow log)"]
    out = [PLAN_MARKER, f"### {title}", "",
           "\u274c **The plan failed**, so this change cannot be applied yet:", "",
           *fence(lines), ""]
    if full_plan_url:
        out.append(f"[Open the workflow run](<{inline(full_plan_url).replace('>', '%3E')}>)")
    return _join(out, [], [], [])


def _variant(plan: Plan) -> str:
    if plan.platform == "convai":
        return f"dialect `{plan.dialect}`"
    return f"platform `{plan.platform}`"


# -- assembly -----------------------------------------------------------------

def _document(marker: str, title: str, status: str, plan: Plan, footer: list[str],
              limit: int | None, hint: str, url: str | None) -> str:
    head = [marker, f"### {title}", "", status, ""]
    if not plan.empty:
        head += [f"**{_escape(plan.summary_line())}**", ""]
        head += _destructive_alert(plan)
        head += _summary_table(plan)
    head += _warnings(plan)
    blocks = [(phase_no, phase_total, plan.phase_title(phase), _change_lines(c, plan))
              for phase_no, phase_total, phase, c in _numbered(plan)]
    render: Callable[[int], str] = lambda shown: _join(
        head, _details(blocks, shown, plan.dialect), _cut_note(shown, len(blocks), hint, url), footer)
    full = render(len(blocks))
    if not limit or len(full) <= limit:
        return full
    low, high = -1, len(blocks) - 1  # largest `shown` < len(blocks) that fits
    while low < high:
        mid = (low + high + 1) // 2
        if len(render(mid)) <= limit:
            low = mid
        else:
            high = mid - 1
    if low >= 0:
        return render(low)
    minimal = _join([marker, f"### {title}", "", status, "",
                     f"**{_escape(plan.summary_line())}**", ""], [], _cut_note(0, len(blocks), hint, url), [])
    if len(minimal) > limit:
        raise ValueError(f"a Markdown limit of {limit} characters is too small even for the summary")
    return minimal


def _join(head: list[str], details: list[str], note: list[str], footer: list[str]) -> str:
    return "\n".join(head + details + note + footer).rstrip("\n") + "\n"


def _numbered(plan: Plan) -> list[tuple[int, int, object, Change]]:
    phases = list(plan.phases())
    return [(no, len(phases), phase, change)
            for no, (phase, group) in enumerate(phases, 1) for change in group]


def _details(blocks: list[tuple[int, int, str, list[str]]], shown: int, dialect: str) -> list[str]:
    if not blocks:
        return []
    what = (f"all {count(len(blocks), 'change')}" if shown == len(blocks)
            else f"the first {shown} of {len(blocks)} changes")
    out = ["<details>", f"<summary>Show {what}, in apply order</summary>", ""]
    phases: dict[int, tuple[str, list[str]]] = {}
    for phase_no, phase_total, phase_title, lines in blocks[:shown]:
        heading = f"**Phase {phase_no}/{phase_total}: {phase_title}**"
        phases.setdefault(phase_no, (heading, []))[1].extend(lines)
    for heading, lines in phases.values():
        out += [heading, "", *fence(lines, "diff"), ""]
    out += ["</details>", ""]
    return out


def _cut_note(shown: int, total: int, hint: str, url: str | None) -> list[str]:
    if shown >= total:
        return []
    where = _escape(hint) + (f" [Open the workflow run]({url})." if url else "")
    return ["> [!NOTE]",
            f"> This comment is cut to fit GitHub's limit of {GITHUB_LIMIT:,} characters: it shows "
            f"{shown} of {total} changes. {where}", ""]


# -- pieces -------------------------------------------------------------------

def _icon(plan: Plan) -> str:
    return "\U0001f534" if _destructive(plan) else "\U0001f7e1"


def _destructive(plan: Plan) -> list[Change]:
    return [c for c in plan.changes if c.resource == "model" and c.action in ("deregister", "replace")]


def _destructive_alert(plan: Plan) -> list[str]:
    doomed = _destructive(plan)
    if not doomed:
        return []
    gone = sum(1 for c in doomed if c.action == "deregister")
    replaced = len(doomed) - gone
    parts = ([f"deregisters {count(gone, 'model')}"] if gone else []) + \
            ([f"replaces {count(replaced, 'model')}"] if replaced else [])
    names = ", ".join(f"{_code(c.id)} ({c.action})" for c in doomed[:MAX_LISTED])
    if len(doomed) > MAX_LISTED:
        names += f" and {len(doomed) - MAX_LISTED} more"
    return ["> [!WARNING]",
            f"> **This plan {' and '.join(parts)}:** {names}.",
            f"> {plan.noun.capitalize()}s that use them are moved first, but anything outside "
            f"{platform(plan.platform).title} that calls these models by name stops "
            "working. Review carefully before merging.", ""]


def _summary_table(plan: Plan) -> list[str]:
    s = plan.summary()
    return [f"| register | update | replace | deregister | {plan.noun}s |",
            "|---:|---:|---:|---:|---:|",
            f"| {s['register']} | {s['update']} | {s['replace']} | {s['deregister']} | {s['characters']} |",
            ""]


def _warnings(plan: Plan) -> list[str]:
    if not plan.warnings:
        return []
    out = ["**Warnings**", ""]
    out += [f"- {_escape(w)}" for w in plan.warnings[:MAX_LISTED]]
    if len(plan.warnings) > MAX_LISTED:
        out.append(f"- and {len(plan.warnings) - MAX_LISTED} more (see the full plan)")
    return out + [""]


def _unchecked_lines(unchecked: list[Unchecked]) -> list[str]:
    if not unchecked:
        return []
    out = ["**Not checked** (the API does not return these fields, so they are never drift):", ""]
    for u in unchecked:
        names = ", ".join(_code(m) for m in u.models[:MAX_LISTED])
        if len(u.models) > MAX_LISTED:
            names += f" and {len(u.models) - MAX_LISTED} more"
        out.append(f"- `{u.field}`: {_escape(u.reason)}" + (f" ({names})" if names else ""))
    return out + [""]


def _endpoint_lines(results: list[EndpointHealth], noun: str) -> list[str]:
    failed = sum(1 for r in results if r.failed)
    head = (f"\U0001f534 **{count(failed, 'endpoint')} failing:** {noun}s on "
            f"{'it' if failed == 1 else 'them'} stop answering." if failed
            else f"**Endpoints:** {_escape(health_summary(results))}")
    rows = [f"| {_code(r.endpoint.model)} | {r.health.value} | {_cell(r.why)} |" for r in results]
    return [head, "", "| Model | Endpoint | Why |", "|---|---|---|", *rows] if rows else [head]


def _cell(text: str) -> str:
    return _escape(text).replace("|", "\\|")


def _change_lines(change: Change, plan: Plan) -> list[str]:
    """One change as diff lines: @@ header, '-' before, '+' after, ' ' unchanged."""
    lines = [f"@@ {headline(change, plan.noun, plan.model_ref, _VERBS)} @@"]
    before, after = change.before or {}, change.after or {}
    keys = list(dict.fromkeys([*after, *before])) if change.action != "update" else list(change.fields)
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        name = key.ljust(width)
        note = "  # forces replacement" if key in change.forces_replace else ""
        if change.action == "register" or (key not in before and key in after):
            lines.append(f"+     {name} = {show(after.get(key))}")
        elif change.action == "deregister" or key not in after:
            lines.append(f"-     {name} = {show(before.get(key))}")
        elif key in change.fields:
            lines.append(f"-     {name} = {show(before.get(key))}")
            lines.append(f"+     {name} = {show(after.get(key))}{note}")
        else:
            lines.append(f"      {name} = {show(after.get(key))}")
    return [inline(line) for line in lines]


_escape = markdown   # prose: see escape.py
_code = code_span
