"""Secret values: wrapped so they cannot be printed by accident, and scrubbed
from any text that leaves the process as a second line of defence."""
from __future__ import annotations

import re
import threading

SENSITIVE = "(sensitive)"
ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

_known: set[str] = set()
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


def remember(value: str) -> None:
    """Register a value that must never be printed (short values are too
    ambiguous to scrub and would mangle ordinary text)."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def scrub(text: str) -> str:
    """Replace every known secret value in `text` with (sensitive)."""
    if not _known:
        return text
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, SENSITIVE)
    return text
