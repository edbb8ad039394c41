"""HTTP transport: a threading HTTP/1.1 server with keep-alive, one socket write per
response (no Nagle/delayed-ACK stalls), dropped connections on demand, and a stop that
really closes every open connection."""
from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

MAX_BODY = 1 << 20  # 1 MiB: larger bodies get 413


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0   # seconds between bytes of the body (a test hook: a slow server)
    repeat: int = 1     # the body is sent this many times over (a test hook: a huge reply)
    content_type: str = "application/json"


class App(Protocol):
    def serve(self, method: str, target: str, headers: Message, raw: bytes) -> Response | None:
        """The response to send, or None to drop the connection without one.
        `target` is the request path with its query string."""


class _BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App):
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.connections_opened = 0  # accepted TCP connections: shows keep-alive reuse
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind: its socket.getfqdn() is a reverse DNS lookup
        # that can stall startup for seconds on some machines.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        with self._open_lock:
            self._open.add(request)
            self.connections_opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client hanging up mid-request is normal, not worth a traceback
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake every keep-alive handler thread so a stopped emulator answers nothing."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive by default
    server_version = "convai-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed eventually
    server: EmulatorServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # no per-request stderr noise

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except _BodyError as exc:
            self.close_connection = True  # the unread body makes the stream unusable
            body = json.dumps({"status": "error", "message": str(exc)}).encode()
            self._write(Response(exc.status, body))
            return
        except (OSError, ValueError):
            self.close_connection = True
            return
        response = self.server.app.serve(self.command, self.path, self.headers, raw)
        if response is None:
            self.close_connection = True  # injected drop: close without a byte of reply
            return
        self._write(response)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BodyError(400, "Invalid Content-Length") from None
        if size < 0:
            raise _BodyError(400, "Invalid Content-Length")
        if size > MAX_BODY:
            raise _BodyError(413, "Request body too large")
        raw = self.rfile.read(size)
        if len(raw) < size:
            raise ConnectionError("client closed the connection mid-body")
        return raw

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";")[0].strip() or b"x", 16)  # ValueError: bad framing
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise _BodyError(413, "Request body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _write(self, response: Response) -> None:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        head = [f"HTTP/1.1 {response.status} {phrase}",
                f"Server: {self.server_version}",
                f"Date: {self.date_time_string()}",
                f"Content-Type: {response.content_type}",
                f"Content-Length: {len(response.body) * response.repeat}"]
        head += [f"{name}: {value}" for name, value in response.headers.items()]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        streamed = response.drip > 0 or response.repeat > 1
        if self.command != "HEAD" and not streamed:
            data += response.body
        try:
            self.wfile.write(data)  # one write: headers and body leave in one segment
            if self.command != "HEAD" and streamed:
                self._stream(response)
        except OSError:
            self.close_connection = True

    def _stream(self, response: Response) -> None:
        """A body sent slowly (one byte per `drip` seconds) or many times over."""
        for _ in range(response.repeat):
            if response.drip <= 0:
                self.wfile.write(response.body)
                continue
            for byte in response.body:
                time.sleep(response.drip)
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
