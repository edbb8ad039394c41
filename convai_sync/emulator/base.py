"""What every platform's emulator shares: the HTTP server's lifecycle, latency,
fault injection (before a request, and after a write committed), the request
log and orphan recording, all under one lock so concurrent clients see a
linearizable account. A platform supplies only its routes (`handle`), its error
envelope (`fault_reply`) and what counts as an orphan (`watch`)."""
from __future__ import annotations

import errno
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from convai_sync.emulator.faults import Faults, draw_after, draw_before
from convai_sync.emulator.records import OrphanEvent, RecordedRequest, redact
from convai_sync.emulator.server import EmulatorServer, Response
from convai_sync.errors import ConvaiSyncError


@dataclass
class Reply:
    status: int
    body: Any
    committed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: Any              # parsed JSON ({} for an empty body), or None when it did not parse
    body_error: str | None  # why the body is not a JSON object, if it is not

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> tuple[Any, str | None]:
    """(body, problem). An empty body is {} because list calls are documented without one."""
    if not raw.strip():
        return {}, None
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"Invalid JSON body: {exc}"
    if not isinstance(body, dict):
        return body, "Request body must be a JSON object"
    return body, None


OrphanCheck = Callable[[], dict[str, str]]


class AppEmulator:
    """Subclasses implement handle(), fault_reply() and, to record orphans, watch()."""

    thread_name = "emulator"

    def __init__(self, faults: Faults | None = None):
        self.url = ""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._orphan_events: list[OrphanEvent] = []
        self._seq = 0
        self._inflight = 0
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._connect_host = "127.0.0.1"
        self._overrides: dict[str, Response] = {}
        self.faults = faults or Faults()

    # --- platform hooks (called under the lock) -----------------------------------------

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def fault_reply(self, request: Request, status: int) -> Reply:
        raise NotImplementedError

    def watch(self, request: Request) -> OrphanCheck | None:
        """Taken before a request runs; called after it committed, it returns
        consumer id -> missing target for the consumers that write orphaned."""
        return None

    # --- configuration and inspection -------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:  # a new Faults restarts its seeded sequence
            self._faults = faults
            self._rng = random.Random(faults.seed)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def orphan_events(self) -> list[OrphanEvent]:
        with self._lock:
            return list(self._orphan_events)

    @property
    def connections(self) -> int:
        """TCP connections accepted since start(): with keep-alive, at most one per
        concurrent client request, however many requests they carried."""
        return self._server.connections_opened if self._server is not None else 0

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.committed]

    def override(self, path: str, body: Any = None, *, status: int = 200, raw: bytes | None = None,
                 headers: dict[str, str] | None = None, drip: float = 0.0, repeat: int = 1) -> None:
        """A test hook: answer every request to `path` with this reply instead of
        the emulated one (nothing is committed). `body` is sent as JSON, or `raw`
        as plain text; `drip` sends the body a byte at a time that many seconds
        apart, `repeat` sends it that many times over (a huge reply without
        building it). `override(path)` with no reply removes the override."""
        with self._lock:
            if body is None and raw is None:
                self._overrides.pop(path, None)
                return
            data = raw if raw is not None else json.dumps(body).encode("utf-8")
            self._overrides[path] = Response(status, data, dict(headers or {}), drip, repeat,
                                             "application/json" if raw is None else "text/plain")

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self._orphan_events.clear()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL (port 0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        try:
            server = EmulatorServer((host, port), self)
        except OSError as exc:
            raise ConvaiSyncError(f"cannot listen on {host}:{port}: {_bind_reason(exc, port)}") from None
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        url_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self._connect_host = url_host
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.url = f"http://{url_host}:{server.server_port}"
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() waits for serve_forever's next poll; a connection to the listener
        # wakes it at once, so stopping takes milliseconds instead of a poll interval.
        waiter = threading.Thread(target=server.shutdown, daemon=True)
        waiter.start()
        try:
            socket.create_connection((self._connect_host, server.server_port), timeout=1).close()
        except OSError:
            pass
        waiter.join()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "AppEmulator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request pipeline (called from server threads) -------------------------------------

    def serve(self, method: str, target: str, headers: Message, raw: bytes) -> Response | None:
        parts = urlsplit(target)
        body, body_error = parse_body(raw)
        request = Request(method, parts.path, parse_qs(parts.query), headers, body, body_error)
        logged = redact(body) if isinstance(body, dict) and raw.strip() else None
        with self._lock:
            if request.path in self._overrides:
                reply = self._overrides[request.path]
                self._record(request.path, logged, reply.status, False, "override")
                return reply
            limit = self._faults.max_inflight
            if limit is not None and self._inflight >= limit:
                self._record(request.path, logged, 429, False, "rate-limit")
                return _encode(self.fault_reply(request, 429))
            self._inflight += 1
            latency = self._faults.latency_ms
        try:
            if latency > 0:
                time.sleep(latency / 1000)  # outside the lock: concurrent requests overlap
            with self._lock:
                return self._serve_locked(request, logged)
        finally:
            with self._lock:
                self._inflight -= 1

    def _serve_locked(self, request: Request, logged: dict | None) -> Response | None:
        path = request.path
        kind = draw_before(self._faults, self._rng)
        if kind is not None:
            status = None if kind == "drop" else int(kind)
            self._record(path, logged, status, False, f"before:{kind}")
            return None if status is None else _encode(self.fault_reply(request, status))
        check = self.watch(request)
        reply = self.handle(request)
        if not reply.committed:
            self._record(path, logged, reply.status, False, None)
            return _encode(reply)
        seq = self._record(path, logged, reply.status, True, None)
        for consumer, target in (check() if check else {}).items():
            self._orphan_events.append(OrphanEvent(seq, path, consumer, target))
        kind = draw_after(self._faults, self._rng)
        if kind is None:
            return _encode(reply)
        status = None if kind == "drop" else int(kind)
        self._requests[-1] = RecordedRequest(seq, path, logged, status, True, f"after:{kind}")
        return None if status is None else _encode(self.fault_reply(request, status))

    def _record(self, path: str, body: dict | None, status: int | None, committed: bool,
                fault: str | None) -> int:
        self._seq += 1
        self._requests.append(RecordedRequest(self._seq, path, body, status, committed, fault))
        return self._seq


def _encode(reply: Reply) -> Response:
    return Response(reply.status, json.dumps(reply.body).encode("utf-8"), reply.headers)


def _bind_reason(exc: OSError, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return exc.strerror or str(exc)
