"""The catalogue of Convai's built-in model codes, kept as data."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def builtin_models() -> frozenset[str]:
    """Every built-in model code shipped with this release."""
    text = (Path(__file__).resolve().parents[2] / "data" / "builtin_models.txt").read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
