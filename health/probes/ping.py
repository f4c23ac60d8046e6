"""The `ping` probe: ICMP echo requests (icmplib); loss and min/avg/max round-trip time in the detail.

Sockets: an unprivileged ICMP datagram socket where the kernel allows it (the process's group is inside
`net.ipv4.ping_group_range`), else a raw socket (root, or CAP_NET_RAW). When neither can be opened the probe is
`misconfigured`, and its detail says what a non-root install needs.
"""

from __future__ import annotations

import time
from typing import Any

import icmplib

from core.spec import ConfigError, Key
from health.probes.base import DEGRADED, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

NO_SOCKET = (
    "cannot open an ICMP socket: a non-root install needs its group inside net.ipv4.ping_group_range "
    '(`sysctl -w net.ipv4.ping_group_range="0 2147483647"`) or CAP_NET_RAW '
    "(`setcap cap_net_raw+ep` on the Python binary, or AmbientCapabilities=CAP_NET_RAW in its systemd unit)"
)


def check_thresholds(cfg: dict[str, Any], where: str) -> None:
    warn, top = cfg.get("loss_warn"), cfg.get("loss_max")
    if warn is not None and top is not None and warn > top:
        raise ConfigError(f"{where}.loss_warn", f"must be at most loss_max ({top:g})")


class PingProbe(Probe):
    """Sends `count` ICMP echo requests to `host`; down when none (or more than loss_max %) come back."""

    keys = {
        "host": Key("str", required=True, help="an address or a name"),
        "count": Key("int", default=3, minimum=1, maximum=100),
        "interval_ms": Key("int", default=200, minimum=0, maximum=10000, help="between packets"),
        "loss_warn": Key("number", default=0, minimum=0, maximum=100, help="loss above this percent is degraded"),
        "loss_max": Key("number", default=99.9, minimum=0, maximum=100, help="loss above this percent is down"),
        "rtt_warn_ms": Key("number", minimum=0, help="an average round trip above this is degraded"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_thresholds(cleaned, where)
        return cleaned

    def _wait(self) -> float:
        """Each packet's wait for its reply, so that the whole run fits in the timeout."""
        count, interval = self.cfg["count"], self.cfg["interval_ms"] / 1000
        spare = self.timeout - (count - 1) * interval
        if spare <= 0:
            raise ProbeConfigError(
                f"config error: settings.count: {count} packets {self.cfg['interval_ms']} ms apart "
                f"do not fit in the timeout ({self.timeout:g} s)"
            )
        return max(0.01, spare / count)

    def _ping(self, privileged: bool, wait: float) -> icmplib.Host:
        cfg = self.cfg
        return icmplib.ping(
            cfg["host"], count=cfg["count"], interval=cfg["interval_ms"] / 1000, timeout=wait, privileged=privileged
        )

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        try:
            check_thresholds(cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        host, wait = cfg["host"], self._wait()
        start = time.monotonic()
        try:
            try:
                result = self._ping(False, wait)  # a datagram socket, where ping_group_range allows it
            except icmplib.SocketPermissionError:
                result = self._ping(True, wait)  # a raw socket: root or CAP_NET_RAW
        except icmplib.SocketPermissionError:
            raise ProbeConfigError(f"config error: {NO_SOCKET}") from None
        except icmplib.NameLookupError:
            raise ProbeError(f"ping {host}: the name does not resolve") from None
        except icmplib.ICMPLibError as exc:
            raise ProbeError(f"ping {host}: {exc or type(exc).__name__}") from None
        except OSError as exc:
            raise ProbeError(f"ping {host}: {exc.strerror or exc}") from None
        except ValueError:  # a NUL or another character no address or name has
            raise ProbeError(f"ping {host!r}: not an address or a host name") from None
        loss = result.packet_loss * 100
        summary = f"ping {host}"
        if result.address != host:
            summary += f" ({result.address})"
        summary += f": {result.packets_sent} sent, {result.packets_received} received, {loss:.0f}% loss"
        if not result.packets_received:
            took = time.monotonic() - start
            raise ProbeTimeout(f"{summary}: no reply within {took:.1f} s")
        summary += f", rtt min/avg/max {result.min_rtt:.3f}/{result.avg_rtt:.3f}/{result.max_rtt:.3f} ms"
        if loss > cfg["loss_max"]:
            raise ProbeError(f"{summary}: more than loss_max {cfg['loss_max']:g}%")
        warnings = []
        if loss > cfg["loss_warn"]:
            warnings.append(f"loss above loss_warn {cfg['loss_warn']:g}%")
        if cfg["rtt_warn_ms"] is not None and result.avg_rtt > cfg["rtt_warn_ms"]:
            warnings.append(f"average rtt above rtt_warn_ms {cfg['rtt_warn_ms']:g}")
        if warnings:
            return ProbeOutcome(DEGRADED, result.avg_rtt, f"{summary}; " + ", ".join(warnings))
        return ProbeOutcome(UP, result.avg_rtt, summary)
