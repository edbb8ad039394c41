"""What the benchmarks share: an emulator in its own process (so that its CPU
does not compete with the client's for one interpreter lock, and its cost can be
measured), and the description of the machine a result was measured on."""
from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterator


class EmulatorHost:
    """Runs `serve(conn)` in a spawned process; `serve` sends its URL first, then
    answers each (command, argument) sent with ask()."""

    def __init__(self, serve: Callable[[Any], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child,), daemon=True)
        self._proc.start()
        self.url = self._conn.recv()

    def ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def close(self) -> None:
        self.ask("stop")
        self._proc.join(timeout=10)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
            f"{dt.date.today().isoformat()}")


def reset(emu: Any, seed: dict, latency_ms: float) -> None:
    """A fresh copy of `seed` and an empty log; the latency applies from now on
    (not to the seeding itself)."""
    from convai_sync.emulator.faults import Faults
    emu.faults = Faults()
    emu.load_seed(seed)
    emu.clear_log()
    emu.faults = Faults(latency_ms=latency_ms)


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """`env` set in os.environ for the block, and the previous values put back."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def serve(conn: Any, emu: Any) -> None:
    """The child's loop for any emulator: its URL first, then `reset` (a fresh
    seed before every measured run), `stats` (since the last reset) and `stop`."""
    emu.start()
    conn.send(emu.url)
    connections, cpu = 0, 0.0
    while True:
        command, arg = conn.recv()
        if command == "reset":
            reset(emu, *arg)
            connections, cpu = emu.connections, time.process_time()
            conn.send(None)
        elif command == "stats":
            writes = emu.writes()
            conn.send({"requests": len(emu.requests), "writes": len(writes),
                       "write_log": [(r.path, r.body) for r in writes],
                       "orphans": len(emu.orphan_events),
                       "connections": emu.connections - connections,
                       "cpu": time.process_time() - cpu})
        else:
            emu.stop()
            conn.send(None)
            return
