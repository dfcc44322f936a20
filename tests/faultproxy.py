"""A fault-injecting HTTP proxy between s3fs and the moto server, for reliability tests.

The code under test talks to the proxy exactly as it would to S3 (pass `proxy.storage_options(...)`); the
proxy forwards every request to moto unchanged, except the ones a rule picks, which get an S3 error
response (503 SlowDown, 500 InternalError, 403 AccessDenied ...) without reaching moto. Faults live at
the HTTP level, so botocore's and s3fs's real retry logic is what gets exercised; nothing of ours is
patched. Every request is logged (method, path, status) for assertions. Both plugins are declared once in
tests/conftest.py:

    pytest_plugins = ["tests.s3server", "tests.faultproxy"]

    def test_x(s3_bucket, fault_proxy):
        fault_proxy.fail(method="GET", path=r"/photos/", status=503, code="SlowDown", times=2)
        options = fault_proxy.storage_options(s3_bucket.storage_options)
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "AccessDenied": "Access Denied",
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


@dataclass
class Rule:
    """Requests matching `method` and the `path` regex (searched in the unquoted path + query) fail."""

    method: str | None
    path: re.Pattern[str] | None
    status: int
    code: str
    times: int | None  # None: every matching request
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        return self.path is None or bool(self.path.search(path))


@dataclass(frozen=True)
class Logged:
    method: str
    path: str  # unquoted, with the query string
    status: int
    injected: bool


class FaultProxy:
    """Forwards to `upstream` (the moto endpoint) on a free loopback port; see the module docstring."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self.rules: list[Rule] = []
        self.log: list[Logged] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int = 503,
        code: str = "SlowDown",
        times: int | None = 1,
    ) -> Rule:
        """Add a rule: the next `times` matching requests (all of them when None) get this error."""
        rule = Rule(method, re.compile(path) if path else None, status, code, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def set_upstream(self, upstream: str) -> None:
        """Forward to `upstream` from now on (a proxy started before the server it fronts, tests_stack)."""
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)

    def remove(self, rule: Rule) -> None:
        """End one rule's fault (a timed outage); requests it would have failed are forwarded again."""
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def storage_options(self, base: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """`base` (e.g. the moto bucket's options) pointed at the proxy, plus `extra` options."""
        return {**base, "endpoint_url": self.endpoint, **extra}

    def requests(self, method: str | None = None, path: str | None = None) -> list[Logged]:
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and (path is None or re.search(path, r.path))
            ]

    def _pick(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                path = unquote(self.path)
                rule = proxy._pick(self.command, path)
                if rule is not None:
                    self._fail(rule, path)
                    return
                conn = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for key, value in resp.getheaders():
                        if key.lower() in _HOP_BY_HOP or key.lower() in ("content-length", "server", "date"):
                            continue
                        self.send_header(key, value)
                    # HEAD answers carry the object's length but no body
                    length = resp.getheader("Content-Length") if self.command == "HEAD" else len(data)
                    self.send_header("Content-Length", str(length or 0))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    proxy._record(Logged(self.command, path, resp.status, False))
                finally:
                    conn.close()

            def _fail(self, rule: Rule, path: str) -> None:
                message = _MESSAGES.get(rule.code, rule.code)
                data = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{rule.code}</Code><Message>{message}</Message>"
                    f"<RequestId>fault-proxy-{rule.hits}</RequestId></Error>"
                ).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy._record(Logged(self.command, path, rule.status, True))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


@pytest.fixture
def fault_proxy(s3_server) -> Iterator[FaultProxy]:
    """A proxy in front of the session's moto server, with no rules yet (needs tests.s3server too)."""
    proxy = FaultProxy(s3_server.endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()
