"""Adoption, shared by every platform: the result of an export, YAML scalars
that survive any live value, key variable names, and the load-back check that
an exported manifest is valid before it is written."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml

from .errors import ConvaiSyncError, ManifestError
from .manifest import parse_manifest

CONSUMER_CHOICES = ("all", "bound-to-custom")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Exported:
    text: str
    consumers: int = 0                                       # how many were written
    variables: dict[str, str] = field(default_factory=dict)  # model -> VAR
    skipped: list[str] = field(default_factory=list)         # why consumers were left out

    @property
    def characters(self) -> int:  # the Convai name, kept for callers of the first release
        return self.consumers


def key_variable(model: str, taken: set[str], platform: str = "convai") -> str:
    """<PLATFORM>_MODEL_<NAME>_API_KEY, unique among `taken`."""
    stem = re.sub(r"[^A-Z0-9]+", "_", model.upper()).strip("_") or "MODEL"
    prefix = platform.upper()
    name, n = f"{prefix}_MODEL_{stem}_API_KEY", 2
    while name in taken:
        name, n = f"{prefix}_MODEL_{stem}_{n}_API_KEY", n + 1
    taken.add(name)
    return name


def scalar(value: object) -> str:
    """A YAML scalar on one line, quoted only when YAML needs it."""
    if isinstance(value, str) and CONTROL.search(value):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def comment(text: str) -> str:
    """A live value made safe for a YAML comment (one line)."""
    return CONTROL.sub(" ", text)


def checked(result: Exported, text: str, section: str) -> Exported:
    """Load the text back; count what it lists. Refuse to hand out a manifest
    that does not load."""
    try:
        loaded = parse_manifest(text, "exported manifest")
    except ManifestError as e:
        raise ConvaiSyncError("the exported manifest does not load back, so it was not written:\n"
                              f"{e}\nPlease report this.") from None
    result.consumers = len(getattr(loaded.manifest, section))
    result.text = text
    return result
