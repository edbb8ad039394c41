"""Shared fixtures: a real emulator on a free port, and the real CLI entry point."""
from __future__ import annotations

import atexit
import compileall
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import settings

# CI explores the same examples every run (no flaky landings); local runs explore anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from convai_sync.cli import main
from convai_sync.emulator import Emulator, demo_seed

ROOT = Path(__file__).resolve().parent.parent


def _private_examples() -> Path:
    """This test process's own copy of examples/: an apply writes its state file and
    lock beside the manifest, which parallel workers must not share, and a user's own
    applied state in the checkout must not leak into the tests."""
    top = Path(tempfile.mkdtemp(prefix="convai-sync-tests-"))
    atexit.register(shutil.rmtree, top, True)
    return Path(shutil.copytree(ROOT / "examples", top / "examples"))


EXAMPLES = _private_examples()
EXAMPLE = EXAMPLES / "models.yaml"
ACCOUNT_KEY = "acct-key-0123456789"
CANARIES = {"STUDIO_GATEWAY_KEY": "sk-CANARY-gateway-7f3a9c", "STUDIO_VLLM_KEY": "sk-CANARY-vllm-41bd02"}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _compile_once() -> None:
    """With PYTHONDONTWRITEBYTECODE set (as on CI), every process the suite starts (the
    workers, and the CLI, emulator and workflow subprocesses) compiled the package again,
    about 0.1 s of CPU each: compile it once, into its usual (git-ignored) __pycache__."""
    if sys.dont_write_bytecode:
        compileall.compile_dir(ROOT / "convai_sync", quiet=1)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in the process that starts the workers
        _compile_once()
    config.addinivalue_line("markers", "long: a test of several seconds (run first, so it "
                                       "is not the last one running when the others are done)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked long first: xdist hands tests out in this order (after the real
    server's unit), so the longest do not start last and stretch the run."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Tests parametrized onto the real LangBot server (ids ending in [real]) share one
    server and reset it between them: they run on one xdist worker, as one unit sent
    first (units go out largest first), so the server starts once while the other
    workers run everything else, one test at a time."""
    from xdist.scheduler import LoadScopeScheduling

    class RealServerOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "real LangBot server" if real_id(nodeid) else nodeid

    return RealServerOnOneWorker(config, log)


@pytest.fixture(autouse=True)
def own_lock_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test its own apply-lock directory, never the user's own: locks are per
    account URL, and a later test's emulator can get the port (so the URL) of an
    earlier one, whose test left a lock on purpose (test_apply_lock.py)."""
    monkeypatch.setenv("CONVAI_SYNC_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


class FakeClock:
    """time.monotonic and time.sleep for the code under test: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    return clock


@pytest.fixture
def serve() -> Iterator[Callable[[Any], Any]]:
    """Start a server (any emulator or stub): every one started is stopped after the test."""
    started: list[Any] = []

    def start(server: Any) -> Any:
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_emulator(serve: Callable[[Any], Any]) -> Callable[..., Emulator]:
    def make(dialect: str = "llm-models", seed: dict | None = None, **kw: object) -> Emulator:
        kw.setdefault("account_key", ACCOUNT_KEY)
        return serve(Emulator(dialect=dialect, seed=demo_seed() if seed is None else seed, **kw))

    return make


PLATFORM_KEY = "emulator-key-for-platforms"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
            serve: Callable[[Any], Any]) -> Callable[..., object]:
    """Start any platform's demo emulator (by name); its account key is set in the
    platform's key variable. `key` makes the emulator accept another one."""
    from convai_sync.providers.registry import platform

    def start(name: str, key: str = PLATFORM_KEY) -> object:
        target = platform(name)
        monkeypatch.setenv(target.env_key, PLATFORM_KEY)
        return serve(target.emulator("auto" if name == "convai" else name, None, key=key))

    return start


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # The example manifests point at example-studio.com, which no test can reach: tests of
    # endpoint checks turn them back on and point the models at a stub (test_endpoints.py).
    values = {"CONVAI_API_KEY": ACCOUNT_KEY, "CONVAI_SYNC_NO_ENDPOINT_CHECK": "1", **CANARIES}
    monkeypatch.delenv("CONVAI_API_URL", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def run(env: dict[str, str]) -> Callable[..., Result]:
    """Run the CLI in-process exactly as the console script does."""

    def invoke(*args: str, stdin: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr, sys.stdin
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO(stdin)
        code = 0
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout, sys.stderr, sys.stdin = saved
        return Result(code, out.getvalue(), err.getvalue())

    return invoke


def example_for(dialect: str, tmp_path: Path) -> Path:
    """The example manifest as a dialect can take it: custom-llm cannot set
    display_name (its register and update have no such field)."""
    if dialect != "custom-llm":
        return EXAMPLE
    path = tmp_path / "models.yaml"
    path.write_text("".join(line for line in EXAMPLE.read_text().splitlines(True)
                            if "display_name:" not in line))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for running convai-sync as a separate process: the test
    account key and canary model keys, no stray API URL or NO_COLOR, then `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONVAI_API_URL", "NO_COLOR")}
    return {**env, "CONVAI_API_KEY": ACCOUNT_KEY, "CONVAI_SYNC_NO_ENDPOINT_CHECK": "1", **CANARIES,
            **extra}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for value in CANARIES.values():
            assert value not in text
        assert ACCOUNT_KEY not in text


_REAL: list[Any] = []  # the running real LangBot server, if one was started
_LAST_REAL: list[pytest.Item] = []  # the last test of this run that uses it


def real_id(nodeid: str) -> bool:
    """Tests parametrized onto the real LangBot server have ids ending in [real]."""
    return nodeid.endswith("[real]")


def pytest_collection_finish(session: pytest.Session) -> None:
    _LAST_REAL[:] = [item for item in session.items if real_id(item.nodeid)][-1:]


@pytest.fixture(scope="session")
def real_langbot() -> Iterator[object]:
    """One real LangBot 4.11.2 server for the whole run (installed by
    .ci/install-langbot). Skipped when it is not installed, unless
    CONVAI_SYNC_REQUIRE_LANGBOT=1 (CI), where that is a failure."""
    from langbot_server import LangBotServer, find_langbot

    if find_langbot() is None:
        if os.environ.get("CONVAI_SYNC_REQUIRE_LANGBOT") == "1":
            pytest.fail("CONVAI_SYNC_REQUIRE_LANGBOT=1 but the real LangBot is not installed: "
                        "run .ci/install-langbot")
        pytest.skip("real LangBot not installed: run .ci/install-langbot to run these tests "
                    "against a real server too")
    with LangBotServer() as server:
        _REAL.append(server)
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the real server after the last test that uses it (its fixtures torn down
    first), not when the worker ends: it holds memory, and its graceful shutdown
    takes seconds; its database is a throwaway, so it gets one second, then a kill."""
    yield
    if _REAL and item in _LAST_REAL:
        _REAL.pop().stop(timeout=1.0)
