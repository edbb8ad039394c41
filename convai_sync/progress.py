"""Apply progress on stderr: one line per phase and per finished change."""
from __future__ import annotations

import threading
from typing import IO

from .executor import Outcome
from .plan import Change, Phase
from .render.values import describe_target


class StderrProgress:
    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._lock = threading.Lock()

    def phase(self, phase: Phase, changes: list[Change]) -> None:
        noun = "change" if len(changes) == 1 else "changes"
        self._write(f"Phase {phase.value}: {phase.title} ({len(changes)} {noun})")

    def finished(self, outcome: Outcome) -> None:
        c = outcome.change
        label = describe_target(c.resource, c.id, c.name)
        detail = f": {outcome.error}" if outcome.error else ""
        self._write(f"  {outcome.status}: {c.action} {label}{detail}")

    def _write(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream, flush=True)
