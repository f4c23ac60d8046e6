"""The keys of a `[[tunnel]]` table, and the bounds the Tunnel columns share (tunnels.models)."""

from __future__ import annotations

from typing import Any

from core.procs import split_pattern
from core.spec import ConfigError, Key

TUNNEL_KEYS: dict[str, Key] = {
    "name": Key("slug", required=True),
    "command": Key("argv", required=True, help="argv; items may use ${ENV_VAR} (a secret, never shown)"),
    "env": Key("dict[str]", default={}, help="the connector's extra environment; values may use ${ENV_VAR}"),
    "process_match": Key(
        "str",
        help="argv elements (split like a shell, matched as whole consecutive elements) that find the connector"
        " when the recorded pid is gone",
    ),
    "ready_url": Key("str"),
    "public_url": Key("str"),
    "check_interval": Key("int", default=30, minimum=1, maximum=86400),
    "max_restarts_per_hour": Key("int", default=5, minimum=0, maximum=60),
    "ready_failure_threshold": Key("int", default=2, minimum=1, maximum=1000),
    # A check waits up to startup_timeout + settle_seconds for a restarted connector, holding its claim.
    "startup_timeout": Key("number", default=30, minimum=1, maximum=600),
    "settle_seconds": Key(
        "number", default=2, minimum=0, maximum=300, help="a started connector must stay alive this long"
    ),
    "log_file": Key("str"),
    "enabled": Key("bool", default=True),
}


def check_tunnel(cleaned: dict[str, Any], where: str) -> None:
    """What the keys' types cannot say: a process_match must split into argv elements (procs.split_pattern)."""
    if cleaned.get("process_match"):
        try:
            split_pattern(cleaned["process_match"])
        except ValueError as exc:
            raise ConfigError(f"{where}.process_match", str(exc)) from None
