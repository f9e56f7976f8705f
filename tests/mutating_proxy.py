"""A proxy on 127.0.0.1 between the client and the emulator that rewrites chosen answers.

Requests are forwarded unchanged (method, path, headers including ``Host``, body), so their
signatures still verify at the emulator. An answer whose request matches ``Rule.method`` and
``Rule.path`` (a regular expression over path and query) is handed to ``Rule.mutate``, which
returns the status and body to send instead; every other answer passes through untouched.
``Rule.respond`` answers without asking the emulator at all (endless pages, huge bodies);
``Rule.answer_body`` likewise, from the request's body too (an error that echoes it).

May import: the standard library.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, bytes]  # status, body
Mutate = Callable[[int, bytes], Answer]


@dataclass
class Chunked:
    """A body sent with chunked encoding, ``size`` bytes of ``fill``, no Content-Length."""

    size: int
    fill: bytes = b" "


@dataclass
class Rule:
    method: str
    path: str  # regular expression, searched in "path?query"
    mutate: Mutate | None = None
    respond: Callable[[str], Answer | Chunked] | None = None
    answer_body: Callable[[str, bytes], Answer] | None = None
    hits: int = 0

    def matches(self, method: str, target: str) -> bool:
        return method == self.method and re.search(self.path, target) is not None


@dataclass
class Proxy:
    upstream: str  # host:port of the emulator
    rules: list[Rule] = field(default_factory=list)
    endpoint: str = ""
    seen: list[str] = field(default_factory=list)

    def rule_for(self, method: str, target: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(method, target)), None)


def _forward(proxy: Proxy, handler: BaseHTTPRequestHandler, body: bytes) -> Answer:
    host, port = proxy.upstream.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(handler.command, handler.path, skip_host=True,
                        skip_accept_encoding=True)
        for name, value in handler.headers.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            proxy.seen.append(f"{self.command} {self.path}")
            rule = proxy.rule_for(self.command, self.path)
            answer: Answer | Chunked
            if rule is not None and rule.respond is not None:
                rule.hits += 1
                answer = rule.respond(self.path)
            elif rule is not None and rule.answer_body is not None:
                rule.hits += 1
                answer = rule.answer_body(self.path, body)
            else:
                status, raw = _forward(proxy, self, body)
                if rule is not None and rule.mutate is not None and status < 400:
                    rule.hits += 1
                    status, raw = rule.mutate(status, raw)
                answer = (status, raw)
            try:
                self._send(answer)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading: that is the point

        def _send(self, answer: Answer | Chunked) -> None:
            if isinstance(answer, Chunked):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("X-Request-Id", "proxy-rid")
                self.end_headers()
                piece = answer.fill * 65536
                sent = 0
                while sent < answer.size:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    sent += len(piece)
                self.wfile.write(b"0\r\n\r\n")
                return
            status, raw = answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Request-Id", "proxy-rid")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        do_POST = do_PUT = do_DELETE = do_GET

    return Handler


@contextmanager
def mutating_proxy(upstream_endpoint: str, rules: list[Rule]) -> Iterator[Proxy]:
    """A running proxy in front of ``upstream_endpoint`` (``http://host:port``)."""
    proxy = Proxy(upstream=upstream_endpoint.removeprefix("http://"), rules=rules)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- mutations of a JSON answer ------------------------------------------------------------

_MISSING = object()


def _steps(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def at_path(doc: Any, path: str, value: object = _MISSING) -> Any:
    """``doc`` with the node at ``path`` replaced by ``value`` (removed when omitted)."""
    steps = _steps(path)
    node = doc
    for step in steps[:-1]:
        node = node[step]
    last = steps[-1]
    if value is _MISSING:
        del node[last]
    else:
        node[last] = value
    return doc


def json_mutation(change: Callable[[Any], Any]) -> Mutate:
    def mutate(status: int, raw: bytes) -> Answer:
        return status, json.dumps(change(json.loads(raw))).encode()
    return mutate


def set_at(path: str, value: object = _MISSING) -> Mutate:
    return json_mutation(lambda doc: at_path(doc, path, value))


def replace_body(body: bytes, status: int = 200) -> Mutate:
    return lambda _status, _raw: (status, body)


def truncate(_status: int, raw: bytes) -> Answer:
    return 200, raw[: max(1, len(raw) // 2)]


def split_first_page(keep: int) -> Mutate:
    """A valid KPS first page cut to ``keep`` items, pointing to the rest: two real pages."""
    def change(doc: Any) -> Any:
        items = doc["keypairs"]
        if len(items) > keep:
            doc["keypairs"] = items[:keep]
            doc["page_info"]["next_marker"] = items[keep - 1]["keypair"]["name"]
        return doc
    return json_mutation(change)
