"""A loopback TCP server whose conversation the test writes: `handler(conn)` runs per connection, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


class ScriptedServer:
    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            self.handler(conn)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for worker in self._threads:
            worker.join(timeout=5)
        self.sock.close()


@contextlib.contextmanager
def scripted(handler: Callable[[socket.socket], None]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(handler).start()
    try:
        yield server
    finally:
        server.stop()


def read_line(conn: socket.socket, limit: int = 4096) -> bytes:
    """One line the client sent (up to and including its newline), or what came before it closed."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def hold(conn: socket.socket) -> None:
    """Read and drop whatever the client sends, answering nothing, until it closes (or 5 s pass)."""
    while conn.recv(4096):
        pass
