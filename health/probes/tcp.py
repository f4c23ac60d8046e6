from __future__ import annotations

import socket
import time
from typing import Any

from core.spec import ConfigError, Key, env_refs
from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

# What `expect` reads at most: a banner check, not a download.
MAX_READ = 64 * 1024
# How much of the reply a detail shows.
SHOWN = 120


def check_exchange(cfg: dict[str, Any], where: str) -> None:
    """`send`/`expect` are plain text (or hex bytes), one of each form at most; `${VAR}` is never expanded here."""
    for text, raw in (("send", "send_hex"), ("expect", "expect_hex")):
        if cfg.get(text) is not None and cfg.get(raw) is not None:
            raise ConfigError(f"{where}.{raw}", f"give {text} or {raw}, not both")
        for name in (text, raw):
            value = cfg.get(name)
            if value is None:
                continue
            if name == text and env_refs(value):
                raise ConfigError(
                    f"{where}.{name}",
                    "is plain text: ${VAR} is not expanded here (a secret never goes into a banner check)",
                )
            if name == raw:
                try:
                    bytes.fromhex(value)
                except ValueError:
                    raise ConfigError(f"{where}.{name}", "must be hex digits (spaces allowed)") from None


def _payload(cfg: dict[str, Any], text: str) -> bytes | None:
    if cfg.get(text) is not None:
        return cfg[text].encode()
    raw = cfg.get(f"{text}_hex")
    return bytes.fromhex(raw) if raw is not None else None


def shown(data: bytes) -> str:
    """The start of what the server sent, readable in a detail (control characters escaped)."""
    text = data[:SHOWN].decode("utf-8", errors="replace")
    return repr(text + ("…" if len(data) > SHOWN else ""))


class TcpProbe(Probe):
    """Opens a TCP connection to host:port; optionally sends text and expects text in the reply (a banner check)."""

    keys = {
        "host": Key("str", required=True),
        "port": Key("int", required=True, minimum=1, maximum=65535),
        "send": Key("str", help="plain text sent after connecting (no ${VAR}); TOML escapes such as \\r\\n work"),
        "send_hex": Key("str", help="bytes sent after connecting, as hex (`0d0a`)"),
        "expect": Key("str", help="text that must appear in what the server sends within the timeout"),
        "expect_hex": Key("str", help="bytes, as hex, that must appear in what the server sends"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_exchange(cleaned, where)
        return cleaned

    def run(self) -> ProbeOutcome:
        try:
            check_exchange(self.cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        host, port = self.cfg["host"], self.cfg["port"]
        send, expect = _payload(self.cfg, "send"), _payload(self.cfg, "expect")
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        try:
            with socket.create_connection((host, port), timeout=self.timeout) as sock:
                detail = f"connected to {host}:{port}"
                if send:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    try:
                        sock.sendall(send)
                    except TimeoutError:
                        raise ProbeTimeout(f"sending to {host}:{port} timed out after {self.timeout:g} s") from None
                    except OSError as exc:
                        raise ProbeError(f"sending to {host}:{port} failed: {exc.strerror or exc}") from None
                if expect:
                    detail += f", received {self._expect(sock, expect, deadline)}"
                elif send:
                    detail += f", sent {len(send)} bytes"
        except TimeoutError as exc:
            raise ProbeTimeout(f"connect to {host}:{port} timed out after {self.timeout:g} s") from exc
        except OSError as exc:
            raise ProbeError(f"connect to {host}:{port} failed: {exc.strerror or exc}") from exc
        latency = (time.perf_counter() - start) * 1000
        return ProbeOutcome(UP, latency, detail)

    def _expect(self, sock: socket.socket, expect: bytes, deadline: float) -> str:
        """Read until `expect` appears, the server closes, MAX_READ bytes or the deadline; what was read, shown."""
        host, port = self.cfg["host"], self.cfg["port"]
        want = repr(self.cfg["expect"]) if self.cfg.get("expect") is not None else f"hex {self.cfg['expect_hex']}"
        data = b""
        while expect not in data:
            if len(data) >= MAX_READ:
                raise ProbeError(f"{host}:{port} sent {MAX_READ} bytes without {want}: {shown(data)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeTimeout(f"no {want} from {host}:{port} within {self.timeout:g} s, got: {shown(data)}")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(min(16384, MAX_READ - len(data)))
            except TimeoutError:
                raise ProbeTimeout(
                    f"no {want} from {host}:{port} within {self.timeout:g} s, got: {shown(data)}"
                ) from None
            except OSError as exc:
                raise ProbeError(f"reading from {host}:{port} failed: {exc.strerror or exc}") from None
            if not chunk:
                raise ProbeError(f"{host}:{port} closed the connection without {want}, got: {shown(data)}")
            data += chunk
        return shown(data)
