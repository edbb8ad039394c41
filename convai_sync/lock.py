"""One apply at a time per account and per state file.

Two applies at once (a laptop and CI, two merges in a row) interleave their
writes: one deregisters the model the other just moved characters back onto,
and the later state-file write drops the earlier one's records. An apply takes
a lock file for its state file (beside it) and for its account (in the user's
lock directory, $CONVAI_SYNC_LOCK_DIR or ~/.cache/convai-sync/locks) before it
reads the account, and removes them when it ends. A second apply is refused
with the holder's pid, host and start time.

A lock whose process is gone on this host (kill -9) is broken automatically; a
lock held on another host can only be broken by hand, with --force-unlock,
once you know that apply is not running. The lock files hold no secret: the
account is named by a hash of its URL (which may carry credentials)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

from .errors import ConvaiSyncError

log = logging.getLogger("convai_sync")


class LockedError(ConvaiSyncError):
    """Another apply holds the lock."""


def lock_paths(account: str, state_path: Path | None) -> list[Path]:
    """The lock files an apply against `account` (recording in `state_path`) takes."""
    base = os.environ.get("CONVAI_SYNC_LOCK_DIR") or Path.home() / ".cache" / "convai-sync" / "locks"
    name = hashlib.sha256(account.encode("utf-8")).hexdigest()[:24]
    paths = [Path(base) / f"account-{name}.lock"]
    if state_path is not None:
        paths.append(state_path.with_name(state_path.name + ".lock"))
    return paths


@contextlib.contextmanager
def apply_lock(account: str, state_path: Path | None, force: bool = False) -> Iterator[None]:
    """Hold every lock of `account` for the duration of the block."""
    token = uuid.uuid4().hex
    held: list[Path] = []
    try:
        for path in lock_paths(account, state_path):
            _take(path, token, force)
            held.append(path)
        yield
    finally:
        for path in held:
            _release(path, token)


def _take(path: Path, token: str, force: bool) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConvaiSyncError(f"{path.parent}: cannot create the lock directory: {e.strerror}; "
                              "set CONVAI_SYNC_LOCK_DIR to a writable directory") from None
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for _ in range(3):
        try:
            _create_with(path, json.dumps(holder))
        except FileExistsError:
            _break_if_stale(path, force)
            continue
        return
    raise LockedError(f"{path}: could not take the apply lock (it keeps being taken); try again")


def _create_with(path: Path, text: str) -> None:
    """Create `path` holding `text` in one step (a hard link of a finished temp
    file): no one ever reads a lock file half written. FileExistsError if taken."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, "utf-8")
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()


def _break_if_stale(path: Path, force: bool) -> None:
    """Remove the lock at `path` if forced or its holder is dead here; else refuse."""
    holder = _read(path)
    if holder is None and not path.exists():
        return  # released meanwhile
    who = (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
           if holder else "an unreadable lock")
    if force or (holder is not None and _dead_here(holder)):
        log.warning("breaking the apply lock %s held by %s (%s)", path, who,
                    "--force-unlock" if force else "that process is gone")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    raise LockedError(f"another apply is running against this account: {who} (lock file {path}). "
                      "Wait for it to finish and run again. If it is not running (killed on "
                      "another machine), run apply again with --force-unlock. Nothing was written.")


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _dead_here(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _release(path: Path, token: str) -> None:
    holder = _read(path)
    if holder is not None and holder.get("token") == token:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
