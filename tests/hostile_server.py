"""A loopback HTTP server that answers every request with a function of the socket (no tests
here): for answers no real server sends, trickled bytes, redirects. It listens on 127.0.0.1,
port 0, serves a bounded number of connections and records each request line."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

Answer = Callable[[socket.socket], None]


class Hostile:
    """Answers each request with ``answer(conn)``; ``requests`` holds the request lines."""

    def __init__(self, answer: Answer) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self._answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        for _ in range(50):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            data += chunk
        self.requests.append(data.split(b"\r\n", 1)[0])
        try:
            self._answer(conn)
        except OSError:
            pass  # the client hung up: what these servers exist to provoke
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


class Servers:
    """Starts servers with ``start(answer)`` and closes them all at the end of a test."""

    def __init__(self) -> None:
        self.made: list[Hostile] = []

    def start(self, answer: Answer) -> Hostile:
        self.made.append(Hostile(answer))
        return self.made[-1]

    def close(self) -> None:
        for server in self.made:
            server.close()


def servers() -> Iterator[Servers]:
    """The body of a test module's fixture: ``yield from servers()``."""
    made = Servers()
    yield made
    made.close()


def trickle(body: bytes, *, every: float = 0.3, status: bytes = b"200 OK",
            headers_too: bool = False) -> Answer:
    """An answer sent one byte every ``every`` seconds: the body, or the headers as well."""
    head = (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))

    def answer(conn: socket.socket) -> None:
        if not headers_too:
            conn.sendall(head)
        for byte in (head + body if headers_too else body):
            conn.sendall(bytes([byte]))
            time.sleep(every)
    return answer


def redirect(target: str, body: bytes = b"", *, status: bytes = b"307 Temporary Redirect",
             extra: bytes = b"") -> Answer:
    """A 3xx to ``target``/elsewhere, with ``body`` (it may look like a success body)."""
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nLocation: " + target.encode()
                     + b"/elsewhere\r\nContent-Type: application/json\r\n" + extra
                     + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return answer


EMPTY_LIST = json.dumps({"keypairs": []}).encode()
