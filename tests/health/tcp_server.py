"""A loopback TCP server whose conversation the test writes: `handler(conn)` runs per connection, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

from tests.servers import LoopbackTcpServer


class ScriptedServer(LoopbackTcpServer):
    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        super().__init__(backlog=16)
        self.handler = handler
        self.received: list[bytes] = []
        self._threads: list[threading.Thread] = []

    def handle(self, conn: socket.socket) -> None:
        worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        self._threads.append(worker)
        worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            self.handler(conn)

    def stopping(self) -> bool:
        return self._stop.is_set()

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
