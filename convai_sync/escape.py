"""Escaping user- and API-supplied text for the medium it goes to.

Names come from the live account and values from pull requests: both are
written by someone else. In a terminal, an ESC sequence can hide plan lines
before the `yes` prompt; in a CI log, a newline can start a line GitHub reads
as a `::workflow-command::`; in a PR comment, a backtick fence, an @mention,
an image or a link can forge content. So:

- `inline(text)`: for one-line text (terminal, log, error message): every
  control, line-breaking or invisible formatting character is shown as its
  escape (`\\n`, `\\x1b`, `\\u202e`), so a value can never start a line or
  send a control sequence;
- `markdown(text)`: for Markdown prose: `inline`, then every character that
  Markdown or HTML would act on is backslash-escaped or made inert, and
  @mentions and autolinks are broken with a zero-width space;
- `code_span(text)` and `fence(lines)`: code that no backtick run can close.
"""
from __future__ import annotations

import re
import unicodedata

_ZWSP = "\u200b"
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what can format, link or break a table mid-line


def _unsafe(ch: str) -> bool:
    """Control (C0, C1, DEL), line/paragraph separators, and invisible format
    characters (bidi overrides, zero-width), which can reorder or hide text."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def _escaped(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inline(text: str) -> str:
    """`text` on one line, with no character a terminal or a log would act on."""
    if text.isprintable():
        return text
    return "".join(_escaped(ch) if _unsafe(ch) else ch for ch in text)


def terminal(text: str) -> str:
    """Text of several lines (a message), each escaped as by `inline`."""
    return "\n".join(inline(line) for line in text.split("\n"))


def inline_quoted(value: object) -> str:
    """A value quoted for an error message: 'text' (escaped), or repr() of a non-string."""
    return f"'{inline(value)}'" if isinstance(value, str) else inline(repr(value))


def markdown(text: str) -> str:
    """Plain text that Markdown renders as itself: no HTML, no formatting, no
    link, image or @mention."""
    text = _MD_SPECIAL.sub(r"\\\1", inline(text))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("@", "@" + _ZWSP).replace("://", ":" + _ZWSP + "//")


def code_span(text: str) -> str:
    """An inline code span (nothing inside renders) that `text` cannot close."""
    text = inline(text)
    ticks = "`" * (_longest_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(lines: list[str], info: str = "") -> list[str]:
    """A fenced code block no line of `lines` can close."""
    ticks = "`" * max(3, max((_longest_run(line) for line in lines), default=0) + 1)
    return [ticks + info, *(inline(line) for line in lines), ticks]


def _longest_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)
