"""Secret values: wrapped so they cannot be printed by accident, and scrubbed
from any text that leaves the process as a second line of defence.

A secret reaches a message in more shapes than its raw value: escaped by
repr() or a bytes repr (`b'sk-...\\n'` from an HTTP library refusing a header),
JSON-escaped inside an echoed request body, URL-encoded in an echoed query,
or cut short by a truncated error body. `remember` records every one of these
forms, and `scrub` replaces each, including a prefix of one at the end of a
text (a cut) and a suffix at its start. Truncate only after scrubbing."""
from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote, quote_plus

SENSITIVE = "(sensitive)"
ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
MIN_LENGTH = 4   # shorter values are too ambiguous to scrub and would mangle ordinary text
MIN_CUT = 6      # the shortest piece of a cut form that is still scrubbed
_ELLIPSIS = ("...", "\u2026")  # what a truncation may append after the cut
PUBLIC_PREFIX = "emulator-"  # the emulators' keys and placeholders: public, never scrubbed

_known: set[str] = set()   # every form of every remembered value
_sorted: list[str] = []    # the same, longest first (so a form inside another goes second)
_lock = threading.Lock()


class Secret:
    """A resolved secret. `str()` and `repr()` never show the value."""

    __slots__ = ("_value", "ref")

    def __init__(self, value: str, ref: str):
        self._value = value
        self.ref = ref
        remember(value)

    def reveal(self) -> str:
        """The real value: only for building a request body."""
        return self._value

    def __str__(self) -> str:
        return SENSITIVE

    def __repr__(self) -> str:
        return f"Secret({self.ref})"


def forms(value: str) -> set[str]:
    """Every shape `value` may take in a message: raw, stripped, repr-escaped,
    bytes-repr-escaped, JSON-escaped and URL-encoded."""
    out = {value, value.strip()}
    for v in list(out):
        out |= {repr(v)[1:-1], repr(v.encode("utf-8"))[2:-1], json.dumps(v)[1:-1],
                json.dumps(v, ensure_ascii=False)[1:-1], quote(v, safe=""), quote_plus(v, safe="")}
    return {f for f in out if len(f) >= MIN_LENGTH}


def remember(value: str) -> None:
    """Register a value that must never be printed, in all its forms."""
    if not value or len(value) < MIN_LENGTH or value.startswith(PUBLIC_PREFIX):
        return
    global _sorted
    with _lock:
        new = forms(value) - _known
        if new:
            _known.update(new)
            _sorted = sorted(_known, key=len, reverse=True)


def scrub(text: str) -> str:
    """Replace every form of every known secret value in `text` with (sensitive)."""
    values = _sorted
    if not values or not text:
        return text
    for value in values:
        if value in text:
            text = text.replace(value, SENSITIVE)
    for value in values:
        text = _scrub_cut(text, value)
    return text


def _scrub_cut(text: str, value: str) -> str:
    """A prefix of `value` ending the text (before or after any ellipsis), or a
    suffix of it starting the text: what survives when a text holding it was cut."""
    if len(value) <= MIN_CUT:
        return text
    for body in _cut_ends(text):
        cut = _cut_prefix_at(body, value)
        if cut is not None:
            text = text[:cut] + SENSITIVE + text[len(body):]
            break
    head = text[:len(value) - 1]
    for size in range(len(head), MIN_CUT - 1, -1):
        if value.endswith(head[:size]):
            return SENSITIVE + text[size:]
    return text


def _cut_ends(text: str) -> list[str]:
    """`text`, and `text` without what a truncation or a print may add after a cut."""
    ends = [text, text.rstrip()]
    for mark in _ELLIPSIS:
        for end in list(ends):
            if end.endswith(mark):
                ends += [end[:-len(mark)], end[:-len(mark)].rstrip()]
    return list(dict.fromkeys(ends))


def _cut_prefix_at(body: str, value: str) -> int | None:
    """Where a prefix of `value` (at least MIN_CUT long) that ends `body` starts."""
    tail = body[-(len(value) - 1):]
    start = tail.find(value[:MIN_CUT])
    while start != -1:
        if value.startswith(tail[start:]):
            return len(body) - len(tail) + start
        start = tail.find(value[:MIN_CUT], start + 1)
    return None
