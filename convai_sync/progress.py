"""Apply progress on stderr, sized for applies of thousands of changes.

On a terminal: one progress bar per phase, redrawn in place with \\r
(`Phase 2/3 rebind characters [#####.....] 150/300`, numbered as the plan
numbers its phases: among those present). In a CI log (not a
terminal): one line when a phase starts and one with its result counts, never
one line per change. A failed change is always printed in full, at once.
"""
from __future__ import annotations

import shutil
import threading
import time
from typing import IO

from .executor import FAILED, Outcome
from .plan import Change, Phase, Plan
from .render.values import label


BAR_WIDTH = 20
REDRAW_EVERY = 0.1  # seconds between redraws of a bar (and always at the end)


class StderrProgress:
    """The executor's progress sink. Thread-safe: `finished` comes from workers."""

    def __init__(self, stream: IO[str], plan: Plan, tty: bool | None = None):
        self.stream = stream
        self.noun = plan.noun
        self.plan = plan
        self.tty = _isatty(stream) if tty is None else tty
        self._lock = threading.Lock()
        self._label = ""
        self._total = self._done = self._failed = 0
        self._drawn_at = 0.0
        self._bar_open = False  # a bar is on screen without its newline

    def phase(self, phase: Phase, changes: list[Change]) -> None:
        with self._lock:
            self._end_bar()
            self._label = f"Phase {self.plan.phase_number(phase)} {phase.title(self.noun)}"
            self._total, self._done, self._failed = len(changes), 0, 0
            if self.tty:
                self._draw()
            else:
                noun = "change" if len(changes) == 1 else "changes"
                self._print(f"{self._label}: {len(changes)} {noun}")

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self._done += 1
            if outcome.status == FAILED:
                self._failed += 1
                self._drawn_at = 0.0  # redraw the bar right under the failure
                self._end_bar(clear=True)
                c = outcome.change
                detail = f": {outcome.error}" if outcome.error else ""
                self._print(f"  {outcome.status}: {c.action} "
                            f"{label(c, self.noun)}{detail}")
            complete = self._done >= self._total
            if self.tty and (complete or time.monotonic() - self._drawn_at >= REDRAW_EVERY):
                self._draw()
            if complete:
                self._phase_result()

    def done(self) -> None:
        """End a bar left open (an interrupted phase); safe to call any time."""
        with self._lock:
            self._end_bar()

    # -- drawing (under the lock) ------------------------------------------------

    def _phase_result(self) -> None:
        counts = f"{self._done - self._failed} done" + (f", {self._failed} failed" if self._failed else "")
        if self.tty:
            self.stream.write(f" ({counts})\n" if self._failed else " done\n")
            self.stream.flush()
            self._bar_open = False
        else:
            self._print(f"{self._label}: {counts}")

    def _draw(self) -> None:
        filled = BAR_WIDTH * self._done // self._total if self._total else BAR_WIDTH
        tail = f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self._done}/{self._total}"
        # fit one terminal line, or \r cannot redraw it; " done" is written once, at the end
        room = shutil.get_terminal_size((80, 24)).columns - len(tail) - len(" done") - 1
        label = self._label if len(self._label) <= room else self._label[:max(room - 1, 8)] + "~"
        self.stream.write(f"\r{label}{tail}")
        self.stream.flush()
        self._drawn_at = time.monotonic()
        self._bar_open = True

    def _end_bar(self, clear: bool = False) -> None:
        if self._bar_open:
            # clear the line so a failure prints on its own; else keep the bar and end it
            self.stream.write("\r\x1b[2K" if clear else "\n")
            self.stream.flush()
            self._bar_open = False

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
