"""JSON requests over httpx's pooled HTTP/1.1 transport, without httpx.Client's
per-request machinery.

httpx.Client.post() spends about 40% of a small request's CPU on features this
API never uses: base-URL merging, cookie extraction, the auth and redirect
flows, event hooks. An apply runs 8 or more requests at once in threads that
share one interpreter lock, so that overhead queues up and stretches every
round trip (measured: apply at 1.24x the round-trip bound with Client.post,
see bench/RESULTS.md). This sends the same request straight to
httpx.HTTPTransport: the connection pool, keep-alive, timeouts, TLS and the
exception types (httpx.ConnectError, httpx.TimeoutException, ...) are all
httpx's own. Proxies come from the environment as with httpx.Client
(HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, minus NO_PROXY).
"""
from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.request
from typing import Any

import httpx

from .. import __version__

log = logging.getLogger("convai_sync.http")

MAX_REPLY_BYTES = 64 * 1024 * 1024  # a larger reply is refused, not held in memory


class ReplyTooLarge(Exception):
    """The reply body grew past MAX_REPLY_BYTES; reading stopped there."""


class JsonTransport:
    """One pool of at most `pool_size` keep-alive connections to one base URL."""

    def __init__(self, base_url: str, headers: dict[str, str], *, timeout: float,
                 pool_size: int, shared: "SharedPool | None" = None):
        """`shared`: borrow connections from a pool many base URLs share (closed by
        its owner), instead of opening a pool of this one's own."""
        self.base_url = httpx.URL(base_url.rstrip("/"))
        self.pool_size = max(1, pool_size)
        self._owned = shared is None
        self._transport = (shared.transport(self.base_url) if shared is not None
                           else _pooled(_environment_proxy(self.base_url), self.pool_size))
        self._headers = [(b"Accept", b"*/*"), (b"Accept-Encoding", b"gzip, deflate"),
                         (b"User-Agent", f"convai-sync/{__version__}".encode()),
                         (b"Content-Type", b"application/json"),
                         *[(k.encode("ascii"), v.encode("utf-8")) for k, v in headers.items()]]
        self.timeout = timeout
        self._urls: dict[str, httpx.URL] = {}

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, str] | None = None, deadline: float | None = None) -> httpx.Response:
        """Send one request and read its whole reply (the connection goes back
        to the pool). Raises httpx.TransportError subclasses like httpx.Client.
        A body of None sends none (a GET or DELETE).

        httpx's timeouts bound each read, not the reply: a server that drips a
        byte every few seconds never trips them. So the whole exchange is held
        to one wall-clock deadline (at most `timeout` from now) and the body is
        streamed, checked against the clock and against MAX_REPLY_BYTES."""
        now = time.monotonic()
        deadline = min(deadline if deadline is not None else now + self.timeout, now + self.timeout)
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(str(self.base_url) + path)
        if params:
            url = url.copy_merge_params(params)
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        left = max(deadline - now, 0.001)
        request = httpx.Request(method, url, headers=self._headers, content=content,
                                extensions={"timeout": httpx.Timeout(left).as_dict()})
        response = self._transport.handle_request(request)
        try:
            response._content = _read_within(response, deadline)  # what response.read() sets
        finally:
            response.close()
        response.request = request
        if log.isEnabledFor(logging.DEBUG):
            log.debug("HTTP Request: %s %s \"HTTP/1.1 %d %s\"", method, url, response.status_code,
                      response.reason_phrase)
        return response

    def close(self) -> None:
        if self._owned:
            self._transport.close()


class SharedPool:
    """One connection pool per proxy for requests to many hosts (endpoint checks):
    building a transport costs more than a request."""

    def __init__(self, size: int):
        self.size = size
        self._pools: dict[str | None, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def transport(self, url: httpx.URL) -> httpx.HTTPTransport:
        proxy = _environment_proxy(url)
        with self._lock:
            if proxy not in self._pools:
                self._pools[proxy] = _pooled(proxy, self.size)
            return self._pools[proxy]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


def _pooled(proxy: str | None, size: int) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(limits=httpx.Limits(max_connections=size,
                                                   max_keepalive_connections=size),
                               proxy=proxy, trust_env=True, verify=tls_context())


_TLS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """httpx's own default TLS context (certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR),
    built once per process and shared: loading the CA bundle costs about 25 ms of CPU,
    more than a request, and every transport (every client, every endpoint check)
    loaded it again."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _TLS_LOCK:
        if key not in _TLS:
            _TLS[key] = httpx.create_ssl_context(trust_env=True)
        return _TLS[key]


def _read_within(response: httpx.Response, deadline: float) -> bytes:
    """The decoded body, or ReadTimeout past `deadline` / ReplyTooLarge past the cap."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise ReplyTooLarge(f"the reply is larger than {MAX_REPLY_BYTES // (1024 * 1024)} MiB")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the reply did not arrive in time (it came too slowly)")
        chunks.append(chunk)
    return b"".join(chunks)


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy httpx.Client(trust_env=True) would use for `url`, if any."""
    host = url.host
    if host in ("localhost", "127.0.0.1", "::1") or urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all")
