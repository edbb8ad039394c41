"""The Emulator: account state, request log, fault injection and the HTTP server, glued
together under one lock so concurrent clients see a linearizable account."""
from __future__ import annotations

import errno
import hmac
import json
import random
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from convai_sync.builtins import builtin_models
from convai_sync.emulator import endpoints
from convai_sync.emulator.faults import (FAULT_MESSAGES, Faults, draw_after, draw_before,
                                         retry_after_header)
from convai_sync.emulator.orphans import OrphanWatch
from convai_sync.emulator.records import OrphanEvent, RecordedRequest, redact
from convai_sync.emulator.seed import DIALECTS, normalize_seed
from convai_sync.emulator.server import EmulatorServer, Response
from convai_sync.emulator.state import AccountState
from convai_sync.errors import ConvaiSyncError


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


class Emulator:
    def __init__(self, dialect: str = "llm-models", account_key: str = "emulator-key",
                 seed: dict | None = None, faults: Faults | None = None,
                 extra_builtins: Iterable[str] = (), character_list_config: bool = True,
                 character_get_config: bool = True):
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
        self.dialect = dialect
        self.account_key = account_key
        self.url = ""
        self._lock = threading.Lock()
        self._builtins = builtin_models() | frozenset(extra_builtins)
        self._state = AccountState(self._builtins)
        self._state.list_carries_config = character_list_config
        self._state.get_carries_config = character_get_config
        self._requests: list[RecordedRequest] = []
        self._orphan_events: list[OrphanEvent] = []
        self._seq = 0
        self._inflight = 0
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._connect_host = "127.0.0.1"
        self.faults = faults or Faults()
        if seed is not None:
            self.load_seed(seed)

    # --- configuration and inspection -------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:  # a new Faults restarts its seeded sequence
            self._faults = faults
            self._rng = random.Random(faults.seed)

    def load_seed(self, seed: dict) -> None:
        """Replace the account state (the request log is kept)."""
        seed = normalize_seed(seed, "seed", self._builtins)
        with self._lock:
            self._state.load(seed)

    def models(self) -> dict[str, dict]:
        with self._lock:
            return self._state.snapshot_models()

    def characters(self) -> dict[str, dict]:
        with self._lock:
            return self._state.snapshot_characters()

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
                                        name="convai-emulator", daemon=True)
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

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request pipeline (called from server threads) -------------------------------------

    def serve(self, method: str, path: str, api_key: str | None, raw: bytes) -> Response | None:
        body, body_error = parse_body(raw)
        logged = redact(body) if isinstance(body, dict) and raw.strip() else None
        key_ok = api_key is not None and hmac.compare_digest(
            api_key.encode("utf-8", "replace"), self.account_key.encode("utf-8"))
        route = endpoints.route(self.dialect, path)
        family = route.family if route else endpoints.MODEL
        with self._lock:
            limit = self._faults.max_inflight
            if limit is not None and self._inflight >= limit:
                reply = self._fault_reply(family, 429)
                self._record(path, logged, 429, False, "rate-limit")
                return _encode(reply)
            self._inflight += 1
            latency = self._faults.latency_ms
        try:
            if latency > 0:
                time.sleep(latency / 1000)  # outside the lock: concurrent requests overlap
            with self._lock:
                return self._serve_locked(route, family, path, method, key_ok, body, body_error,
                                          logged)
        finally:
            with self._lock:
                self._inflight -= 1

    def _serve_locked(self, route: endpoints.Route | None, family: str, path: str, method: str,
                      key_ok: bool, body: Any, body_error: str | None,
                      logged: dict | None) -> Response | None:
        kind = draw_before(self._faults, self._rng)
        if kind is not None:
            status = None if kind == "drop" else int(kind)
            self._record(path, logged, status, False, f"before:{kind}")
            return None if status is None else _encode(self._fault_reply(family, status))
        watch = OrphanWatch(self._state, body) if route and route.writes else None
        reply = endpoints.handle(self._state, route, path, method, key_ok, body, body_error)
        if not reply.committed:
            self._record(path, logged, reply.status, False, None)
            return _encode(reply)
        seq = self._record(path, logged, reply.status, True, None)
        for cid, model in (watch.new_orphans() if watch else {}).items():
            self._orphan_events.append(OrphanEvent(seq, path, cid, model))  # seeded ones never count
        kind = draw_after(self._faults, self._rng)
        if kind is None:
            return _encode(reply)
        status = None if kind == "drop" else int(kind)
        self._requests[-1] = RecordedRequest(seq, path, logged, status, True, f"after:{kind}")
        return None if status is None else _encode(self._fault_reply(family, status))

    def _record(self, path: str, body: dict | None, status: int | None, committed: bool,
                fault: str | None) -> int:
        self._seq += 1
        self._requests.append(RecordedRequest(self._seq, path, body, status, committed, fault))
        return self._seq

    def _fault_reply(self, family: str, status: int) -> endpoints.Reply:
        reply = endpoints.error(family, status, FAULT_MESSAGES[status])
        if status == 429:
            reply.headers["Retry-After"] = retry_after_header(self._faults.retry_after)
        return reply


def _encode(reply: endpoints.Reply) -> Response:
    return Response(reply.status, json.dumps(reply.body).encode("utf-8"), reply.headers)


def _bind_reason(exc: OSError, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return exc.strerror or str(exc)
