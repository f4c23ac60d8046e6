"""Real loopback servers for tests: HTTP that can be slow, hang, or answer anything; raw TCP.

Every server binds 127.0.0.1 on a free port and is stopped by its fixture.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    hang: bool = False  # accept, then never answer (until the server stops)
    trickle: float = 0.0  # seconds between single body bytes (slowloris)
    endless: bool = False  # a body that never ends


class _QueuedServer(ThreadingHTTPServer):
    # A deeper accept queue than the default 5, so many simultaneous probes don't wait on SYN retries.
    request_queue_size = 128


class HttpServer:
    """A threaded HTTP server whose answer can be changed while it runs.

    `server.reply = Reply(...)` for every path, `server.routes["/x"] = Reply(...)` per
    path, or `server.handler = fn(request) -> Reply`. `server.requests` records each one.
    """

    def __init__(self) -> None:
        self.reply = Reply()
        self.routes: dict[str, Reply] = {}
        self.handler: Callable[[dict[str, Any]], Reply] | None = None
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                outer.requests.append(request)
                reply = (
                    outer.handler(request) if outer.handler else outer.routes.get(self.path.split("?")[0], outer.reply)
                )
                if reply.hang:
                    outer._stop.wait(60)
                    return
                if reply.delay:
                    outer._stop.wait(reply.delay)
                payload = reply.body
                headers = dict(reply.headers)
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload)
                    headers.setdefault("Content-Type", "application/json")
                if isinstance(payload, str):
                    payload = payload.encode()
                try:
                    self.send_response(reply.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if reply.endless:
                        self.send_header("Content-Length", str(10**12))
                        self.end_headers()
                        chunk = b"x" * 65536
                        while not outer._stop.is_set():
                            self.wfile.write(chunk)
                        return
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if reply.trickle:
                        for i in range(len(payload)):
                            if outer._stop.wait(reply.trickle):
                                return
                            self.wfile.write(payload[i : i + 1])
                            self.wfile.flush()
                    elif self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _serve

        self.httpd = _QueuedServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class LoopbackTcpServer:
    """A TCP listener on a free loopback port whose accept loop runs in a thread; `handle(conn)` is the
    subclass's (TcpServer, tests.health.tls_server.TlsServer, tests.health.tcp_server.ScriptedServer)."""

    def __init__(self, backlog: int = 64) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the 0.1 s timeout, or the socket closed by stop()
                continue
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        conn.close()

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class TcpServer(LoopbackTcpServer):
    """Accepts TCP connections on loopback (and closes them at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted = 0

    def handle(self, conn: socket.socket) -> None:
        self.accepted += 1
        conn.close()


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
