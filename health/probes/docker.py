"""The `docker` probe: a container's state through the Docker Engine API on its unix socket.

A small client of the documented endpoints (GET /containers/{id}/json, GET /containers/{id}/logs, POST
/containers/{id}/restart) over http.client and an AF_UNIX socket: no SDK. `recovery.actions.restart_container`
uses the same client.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import time
from typing import Any
from urllib.parse import quote, urlencode

from core.spec import ConfigError, Key, scrub
from health.probes.base import DEGRADED, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

DEFAULT_SOCKET = "/var/run/docker.sock"
# Docker's names and ids: no slash, so a name never reaches another endpoint.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
# What one answer may be at most (an inspect document is a few KB; logs are asked for by tail).
MAX_BODY = 1024 * 1024
LOG_CHARS = 600
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class EngineError(Exception):
    """The Engine API could not be reached or answered with an error."""


class EngineTimeout(EngineError):
    pass


class EngineRefused(EngineError):
    """The socket exists but this process may not use it (a configuration matter)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def check_container(cfg: dict[str, Any], where: str) -> None:
    """`container` is one name or id (never a path onto another endpoint); `socket` an absolute path."""
    name = cfg.get("container")
    if isinstance(name, str) and not NAME.fullmatch(name.removeprefix("/")):
        raise ConfigError(f"{where}.container", "must be a container name or id (letters, digits, '_', '.', '-')")
    path = cfg.get("socket")
    if isinstance(path, str) and (not path.startswith("/") or "\x00" in path or len(path.encode()) > 107):
        raise ConfigError(f"{where}.socket", "must be an absolute path of a unix socket (at most 107 bytes)")


class Engine:
    """The few Engine API calls the portal makes, each bounded by `timeout` seconds."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout

    def call(self, method: str, path: str, query: dict[str, Any] | None = None) -> tuple[int, bytes]:
        url = path + (f"?{urlencode(query)}" if query else "")
        connection = _UnixConnection(self.path, self.timeout)
        try:
            connection.request(method, url, headers={"Host": "docker"})
            response = connection.getresponse()
            body = response.read(MAX_BODY)
            return response.status, body
        except FileNotFoundError:
            raise EngineError(f"the Docker socket {self.path} does not exist (is the Docker daemon running?)") from None
        except PermissionError:
            raise EngineRefused(
                f"no permission to use the Docker socket {self.path}: add the portal's user to its group "
                "(usually `docker`)"
            ) from None
        except ConnectionRefusedError:
            raise EngineError(f"nothing listens on the Docker socket {self.path}") from None
        except TimeoutError:
            raise EngineTimeout(f"the Docker socket {self.path}: no answer within {self.timeout:g} s") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise EngineError(f"the Docker socket {self.path}: {getattr(exc, 'strerror', None) or exc}") from None
        finally:
            connection.close()

    @staticmethod
    def message(status: int, body: bytes) -> str:
        try:
            text = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            text = body.decode("utf-8", errors="replace")
        return CONTROL.sub(" ", text).strip()[:200]

    def inspect(self, container: str) -> dict[str, Any] | None:
        """The container's inspect document; None when it does not exist."""
        status, body = self.call("GET", f"/containers/{quote(container, safe='')}/json")
        if status == 404:
            return None
        if status != 200:
            raise EngineError(f"inspecting {container} answered HTTP {status}: {self.message(status, body)}")
        try:
            document = json.loads(body)
        except ValueError:
            raise EngineError(f"inspecting {container} answered something that is not JSON") from None
        if not isinstance(document, dict):
            raise EngineError(f"inspecting {container} answered something that is not a JSON object")
        return document

    def logs(self, container: str, lines: int, tty: bool) -> str:
        query = {"stdout": 1, "stderr": 1, "tail": lines}
        status, body = self.call("GET", f"/containers/{quote(container, safe='')}/logs", query)
        if status != 200:
            return ""
        return (body if tty else demux(body)).decode("utf-8", errors="replace")

    def restart(self, container: str, stop_timeout: int) -> tuple[int, str]:
        status, body = self.call("POST", f"/containers/{quote(container, safe='')}/restart", {"t": stop_timeout})
        return status, self.message(status, body) if status >= 300 else ""


def demux(data: bytes) -> bytes:
    """The payload of Docker's multiplexed stream (8-byte frames: stream, 3 zero bytes, big-endian size)."""
    out, offset = [], 0
    while offset + 8 <= len(data):
        stream, size = data[offset], struct.unpack(">I", data[offset + 4 : offset + 8])[0]
        if stream not in (0, 1, 2) or data[offset + 1 : offset + 4] != b"\0\0\0":
            return data  # not multiplexed after all: the raw text
        out.append(data[offset + 8 : offset + 8 + size])
        offset += 8 + size
    return b"".join(out)


def last_lines(text: str, secrets: list[str], lines: int) -> str:
    """The last log lines for a detail: scrubbed whole, then cut, control characters blanked, bounded."""
    kept = scrub(text, secrets).strip().splitlines()[-lines:]
    return CONTROL.sub(" ", " | ".join(line.strip() for line in kept))[-LOG_CHARS:]


class DockerProbe(Probe):
    """A container is up when running (and healthy, if it has a healthcheck); starting is degraded."""

    keys = {
        "container": Key("str", required=True, help="a container name or id"),
        "socket": Key("str", default=DEFAULT_SOCKET, help="the Docker Engine API's unix socket"),
        "log_lines": Key("int", default=5, minimum=0, maximum=50, help="last log lines shown when down"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_container(cleaned, where)
        return cleaned

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        try:
            check_container(cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        name = cfg["container"]
        engine = Engine(cfg["socket"], self.timeout)
        start = time.perf_counter()
        try:
            document = engine.inspect(name)
            latency = (time.perf_counter() - start) * 1000
            if document is None:
                raise ProbeError(f"container {name} does not exist (Docker answered 404)")
            state = document.get("State") or {}
            health = (state.get("Health") or {}).get("Status") if isinstance(state.get("Health"), dict) else None
            status = str(state.get("Status") or "unknown")
            running = state.get("Running") is True and not state.get("Paused") and not state.get("Restarting")
            where = f"container {name} is {status}"
            if running and health in (None, "", "none", "healthy"):
                return ProbeOutcome(UP, latency, where + (f", {health}" if health == "healthy" else ""))
            if running and health == "starting":
                return ProbeOutcome(DEGRADED, latency, f"{where}, health starting")
            detail = where + (f", health {health}" if health else "")
            checks = (state.get("Health") or {}).get("Log") if health else None
            if running and isinstance(checks, list) and checks and isinstance(checks[-1], dict):
                said = last_lines(str(checks[-1].get("Output") or ""), self.secrets, 3)
                if said:
                    detail += f" (last check exit {checks[-1].get('ExitCode')}: {said})"
            if not running:
                detail += f" (exit code {state.get('ExitCode')})"
            error = state.get("Error")
            if error:
                detail += f", error: {CONTROL.sub(' ', str(error))[:200]}"
            if cfg["log_lines"]:
                tty = bool((document.get("Config") or {}).get("Tty"))
                logs = last_lines(engine.logs(name, cfg["log_lines"], tty), self.secrets, cfg["log_lines"])
                if logs:
                    detail += f"; last log lines: {logs}"
            raise ProbeError(detail)
        except EngineRefused as exc:
            raise ProbeConfigError(f"config error: settings.socket: {exc}") from None
        except EngineTimeout as exc:
            raise ProbeTimeout(str(exc)) from None
        except EngineError as exc:
            raise ProbeError(str(exc)) from None
