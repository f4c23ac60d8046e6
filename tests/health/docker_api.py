"""A loopback stand-in of the Docker Engine API on a unix socket (no Docker daemon can run here).

It answers the documented shapes of GET /containers/{id}/json (State, Config), GET /containers/{id}/logs (the
multiplexed stream without a TTY, raw text with one) and POST /containers/{id}/restart?t=N (204; 404 for an
unknown container), with states a test sets per container.
"""

from __future__ import annotations

import json
import shutil
import socketserver
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Container:
    status: str = "running"  # created | running | paused | restarting | removing | exited | dead
    exit_code: int = 0
    health: str | None = None  # starting | healthy | unhealthy, or None: no healthcheck
    tty: bool = False
    logs: list[tuple[int, str]] = field(default_factory=list)  # (stream 1 stdout | 2 stderr, line)
    error: str = ""
    check_output: str = ""  # the last healthcheck's output (State.Health.Log)
    restart_to: str = "running"  # the status a restart leaves
    restart_status: int = 204  # what POST /restart answers
    restarts: list[int] = field(default_factory=list)  # the t= of each restart

    def document(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Status": self.status,
            "Running": self.status in ("running", "paused", "restarting"),
            "Paused": self.status == "paused",
            "Restarting": self.status == "restarting",
            "OOMKilled": False,
            "Dead": self.status == "dead",
            "Pid": 4242 if self.status == "running" else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": "2026-12-01T10:00:00.000000000Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        }
        if self.health is not None:
            checks = []
            if self.check_output:
                checks = [
                    {
                        "Start": "2026-12-01T10:00:00Z",
                        "End": "2026-12-01T10:00:01Z",
                        "ExitCode": 0 if self.health == "healthy" else 1,
                        "Output": self.check_output,
                    }
                ]
            state["Health"] = {"Status": self.health, "FailingStreak": len(checks), "Log": checks}
        return {
            "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
            "Name": f"/{name}",
            "State": state,
            "Config": {"Tty": self.tty, "Image": "example/app:1"},
        }


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


class DockerApi:
    """`with DockerApi() as api: api.containers["web"] = Container(...)`; `api.socket` is its path."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))  # short: unix socket paths are ≤ 107 bytes
        self.socket = str(self.dir / "docker.sock")
        self.containers: dict[str, Container] = {}
        self.requests: list[tuple[str, str]] = []
        self.hang = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def do_GET(self) -> None:
                api.handle(self, "GET")

            def do_POST(self) -> None:
                api.handle(self, "POST")

        self.server = _Server(self.socket, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DockerApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        self.requests.append((method, request.path))
        if self.hang:
            threading.Event().wait(5)
        parts = url.path.strip("/").split("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if len(parts) != 3 or parts[0] != "containers":
            return self.reply(request, 404, {"message": "page not found"})
        name, what = unquote(parts[1]), parts[2]
        container = self.containers.get(name)
        if container is None:
            return self.reply(request, 404, {"message": f"No such container: {name}"})
        if method == "GET" and what == "json":
            return self.reply(request, 200, container.document(name))
        if method == "GET" and what == "logs":
            tail = int(query.get("tail", "0") or 0) if query.get("tail") != "all" else len(container.logs)
            lines = container.logs[-tail:] if tail else []
            if container.tty:
                body = "".join(line + "\n" for _, line in lines).encode()
                return self.reply(request, 200, body, "application/vnd.docker.raw-stream")
            frames = b""
            for stream, line in lines:
                data = (line + "\n").encode()
                frames += struct.pack(">BxxxI", stream, len(data)) + data
            return self.reply(request, 200, frames, "application/vnd.docker.multiplexed-stream")
        if method == "POST" and what == "restart":
            container.restarts.append(int(query.get("t", "-1")))
            if container.restart_status == 204:
                container.status, container.exit_code = container.restart_to, 0
                return self.reply(request, 204, b"")
            return self.reply(request, container.restart_status, {"message": "cannot restart container"})
        return self.reply(request, 404, {"message": "page not found"})

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, body: Any, kind: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(data)))
        request.send_header("Api-Version", "1.45")
        request.end_headers()
        request.wfile.write(data)
