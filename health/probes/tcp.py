from __future__ import annotations

import socket
import time

from core.spec import Key
from health.probes.base import UP, Probe, ProbeError, ProbeOutcome, ProbeTimeout


class TcpProbe(Probe):
    """Opens a TCP connection to host:port."""

    keys = {
        "host": Key("str", required=True),
        "port": Key("int", required=True, minimum=1, maximum=65535),
    }

    def run(self) -> ProbeOutcome:
        host, port = self.cfg["host"], self.cfg["port"]
        start = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=self.timeout):
                pass
        except TimeoutError as exc:
            raise ProbeTimeout(f"connect to {host}:{port} timed out after {self.timeout:g} s") from exc
        except OSError as exc:
            raise ProbeError(f"connect to {host}:{port} failed: {exc.strerror or exc}") from exc
        latency = (time.perf_counter() - start) * 1000
        return ProbeOutcome(UP, latency, f"connected to {host}:{port}")
