"""Run a real LangBot server (installed by .ci/install-langbot) for integration tests.

    from langbot_server import LangBotServer, find_langbot

    if find_langbot() is None:
        pytest.skip("run .ci/install-langbot first")
    with LangBotServer() as lb:
        httpx.get(f"{lb.url}/api/v1/provider/models/llm", headers={"X-API-Key": lb.key}, verify=False)

Each server gets a fresh temporary working directory (so a fresh SQLite DB in
``data/``), a free loopback port and a random global API key. The environment
keeps LangBot on loopback: telemetry, the models service, plugins, the
marketplace and Box are off, litellm uses its bundled cost map, and the
unconditional version check goes to a dead proxy on 127.0.0.1:9. See
tests/langbot_real_notes.md for what was verified against 4.11.2.
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from types import TracebackType

import httpx

LANGBOT_VERSION = "4.11.2"
READY_PATH = "/api/v1/provider/models/llm"

# Config overrides and proxy settings that keep LangBot off the network. LangBot
# maps UPPER__SNAKE env vars onto data/config.yaml (pkg/core/stages/load_config.py).
LOOPBACK_ENV = {
    "SPACE__DISABLE_TELEMETRY": "true",
    "SPACE__DISABLE_MODELS_SERVICE": "true",
    "PLUGIN__ENABLE": "false",
    "PLUGIN__ENABLE_MARKETPLACE": "false",
    "BOX__ENABLED": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "PROXY__HTTPS": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}
# Inherited variables that could send traffic elsewhere; dropped before ours are added.
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class LangBotServerError(RuntimeError):
    """The server did not come up (or exited early); the message ends with its log tail."""


def default_venv() -> Path:
    """The venv .ci/install-langbot installs into: $LANGBOT_VENV or the per-version cache."""
    env = os.environ.get("LANGBOT_VENV")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "convai-sync" / f"langbot-{LANGBOT_VERSION}"


def find_langbot() -> Path | None:
    """The venv's ``bin/langbot`` if it is installed, else None."""
    exe = default_venv() / "bin" / "langbot"
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LangBotServer:
    """One LangBot process in its own session (process group) and temp CWD."""

    def __init__(
        self,
        executable: Path | str | None = None,
        *,
        startup_timeout: float = 90.0,
        extra_env: dict[str, str] | None = None,
        keep_workdir: bool | None = None,
    ) -> None:
        self.executable = Path(executable) if executable else find_langbot()
        self.startup_timeout = startup_timeout
        self.extra_env = dict(extra_env or {})
        # LANGBOT_KEEP_WORKDIR=1 keeps data/ and langbot.log after stop() for debugging.
        self.keep_workdir = bool(os.environ.get("LANGBOT_KEEP_WORKDIR")) if keep_workdir is None else keep_workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.port: int | None = None
        self.key: str = ""
        self.url: str = ""
        self.startup_seconds: float | None = None

    # -- lifecycle -----------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The child's environment: ours minus proxies and stray LangBot config overrides."""
        assert self.port is not None
        base = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in _PROXY_VARS and not (k.isupper() and "__" in k.strip("_"))
        }
        return {
            **base,
            "PYTHONUNBUFFERED": "1",
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.port),
            "API__WEBHOOK_PREFIX": f"http://127.0.0.1:{self.port}",
            "API__GLOBAL_API_KEY": self.key,
            **LOOPBACK_ENV,
            **self.extra_env,
        }

    def start(self) -> LangBotServer:
        if self.proc is not None:
            raise RuntimeError("LangBotServer already started")
        if self.executable is None or not Path(self.executable).exists():
            raise LangBotServerError(
                f"langbot not found in {default_venv()}; run .ci/install-langbot (or set LANGBOT_VENV)"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="langbot-"))
        self.log_path = self.workdir / "langbot.log"
        self.port = free_port()
        self.key = "lbk_test_" + secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        began = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.executable)],
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready(began)
        except BaseException:
            keep, self.keep_workdir = self.keep_workdir, True  # the error names its log
            try:
                self.stop()
            finally:
                self.keep_workdir = keep
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, began: float) -> None:
        assert self.proc is not None
        deadline = began + self.startup_timeout
        last_error = "no answer yet"
        with httpx.Client(trust_env=False, timeout=5.0, verify=False) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise LangBotServerError(f"langbot exited early with code {code}\n{self.log_tail()}")
                try:
                    r = client.get(self.url + READY_PATH, headers=self.headers)
                    if r.status_code == 200:
                        return
                    last_error = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    last_error = f"{type(e).__name__}: {e}"
                if time.monotonic() > deadline:
                    raise LangBotServerError(
                        f"langbot not ready on {self.url} after {self.startup_timeout:.0f}s "
                        f"(last: {last_error})\n{self.log_tail()}"
                    )
                time.sleep(0.25)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL it. Idempotent."""
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            pgid = proc.pid  # start_new_session=True: the child leads its own group
            if not _wait_exited(proc.pid, 0):
                _signal_group(pgid, signal.SIGTERM)
                if not _wait_exited(proc.pid, timeout):
                    _signal_group(pgid, signal.SIGKILL)
            # The leader is exited but not reaped yet (WNOWAIT), so its pid still names
            # the group: kill any stragglers it left, then reap it.
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LangBotServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key, "Content-Type": "application/json"}

    def client(self, **kw: object) -> httpx.Client:
        """An httpx client on this server with the key set (ignores proxy env)."""
        return httpx.Client(base_url=self.url, headers=self.headers, trust_env=False, verify=False, **kw)  # type: ignore[arg-type]

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, "r", encoding="utf-8", errors="replace") as f:
            tail = deque(f, maxlen=lines)
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "".join(tail)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_exited(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to exit without reaping it; True if it exited in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
