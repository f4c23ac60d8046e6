"""The `redis` probe: PING, and optionally memory use from INFO against `maxmemory`."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.spec import ConfigError, Key, env_value, scrub
from health.probes.base import DEGRADED, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout


def check_tls(cfg: dict[str, Any], where: str) -> None:
    """`verify_tls` and `ca_file` only mean something with `tls = true`, and `ca_file` only when verifying."""
    if not cfg.get("tls"):
        for name in ("verify_tls", "ca_file"):
            if cfg.get(name) is not None:
                raise ConfigError(f"{where}.{name}", "applies only with tls = true")
    if cfg.get("ca_file") is not None and cfg.get("verify_tls") is False:
        raise ConfigError(f"{where}.ca_file", "is not used with verify_tls = false (remove one of them)")


class RedisProbe(Probe):
    """Sends PING to a Redis server; with `max_memory_pct`, used_memory above that share of maxmemory is degraded."""

    keys = {
        "host": Key("str", required=True),
        "port": Key("int", default=6379, minimum=1, maximum=65535),
        "db": Key("int", default=0, minimum=0, maximum=65535),
        "username": Key("str", help="an ACL user (Redis 6+); default the server's `default` user"),
        "password_env": Key("str", help="name of the variable holding the password"),
        "tls": Key("bool", default=False),
        # No default in the Key (unset means true), so a verify_tls given without tls can be refused by name.
        "verify_tls": Key("bool", help="with tls: check the certificate and the host name (default true)"),
        "ca_file": Key("str", help="with tls: CA bundle to trust (default the system's, honouring SSL_CERT_FILE)"),
        "max_memory_pct": Key(
            "number", minimum=0.1, maximum=100, help="used_memory above this share of maxmemory is degraded"
        ),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_tls(cleaned, where)
        return cleaned

    def _options(self) -> dict[str, Any]:
        cfg = self.cfg
        try:
            check_tls(cfg, "settings")
            password = env_value(cfg["password_env"], self.secrets) if cfg["password_env"] else None
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        tls: dict[str, Any] = {}
        if cfg["tls"]:
            verify = cfg["verify_tls"] is not False
            if cfg["ca_file"] and not os.access(cfg["ca_file"], os.R_OK):
                raise ProbeConfigError(f"config error: settings.ca_file: cannot read {cfg['ca_file']}")
            tls = {
                "ssl": True,
                "ssl_cert_reqs": "required" if verify else "none",
                "ssl_check_hostname": verify,
                "ssl_ca_certs": cfg["ca_file"],
            }
        return dict(
            host=cfg["host"],
            port=cfg["port"],
            db=cfg["db"],
            username=cfg["username"],
            password=password,
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),  # one try: the next round is the retry
            retry_on_timeout=False,
            single_connection_client=True,
            **tls,
        )

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        where = f"redis {cfg['host']}:{cfg['port']}/{cfg['db']}"
        options = self._options()
        start = time.perf_counter()
        try:
            # A single-connection client connects (AUTH, SELECT) in its constructor.
            client = redis.Redis(**options)
            try:
                client.ping()
                latency = (time.perf_counter() - start) * 1000
                memory = client.info("memory") if cfg["max_memory_pct"] is not None else None
            finally:
                client.close()
        except redis.exceptions.TimeoutError:
            raise ProbeTimeout(f"{where}: no answer within {self.timeout:g} s") from None
        except redis.exceptions.RedisError as exc:
            # Scrubbed whole, then cut: a secret across the cut would leave its head behind, unmatched.
            text = scrub(str(exc), self.secrets).strip() or type(exc).__name__
            raise ProbeError(f"{where}: {text.splitlines()[0][:200]}") from None
        detail = f"{where}: PONG"
        if memory is None:
            return ProbeOutcome(UP, latency, detail)
        return self._memory(memory, latency, detail)

    def _memory(self, info: dict[str, Any], latency: float, detail: str) -> ProbeOutcome:
        try:
            used, limit = int(info["used_memory"]), int(info.get("maxmemory", 0))
        except (KeyError, TypeError, ValueError):
            raise ProbeError(f"{detail}, but INFO memory has no used_memory") from None
        if limit <= 0:
            return ProbeOutcome(
                UP,
                latency,
                f"{detail}; used_memory {_mib(used)}, maxmemory is 0 (no limit): max_memory_pct not checked",
            )
        pct = used * 100 / limit
        summary = f"used_memory {_mib(used)} of maxmemory {_mib(limit)} ({pct:.1f}%)"
        if pct > self.cfg["max_memory_pct"]:
            return ProbeOutcome(
                DEGRADED, latency, f"{detail}; {summary} is above max_memory_pct {self.cfg['max_memory_pct']:g}%"
            )
        return ProbeOutcome(UP, latency, f"{detail}; {summary}")


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"
