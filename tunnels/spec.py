"""The keys of a `[[tunnel]]` table."""

from __future__ import annotations

from opsportal.spec import Key

TUNNEL_KEYS: dict[str, Key] = {
    "name": Key("slug", required=True),
    "command": Key("argv", required=True, help="argv; items may use ${ENV_VAR} (a secret, never shown)"),
    "env": Key("dict[str]", default={}, help="the connector's extra environment; values may use ${ENV_VAR}"),
    "process_match": Key("str", help="cmdline substring that finds the connector when not started by us"),
    "ready_url": Key("str"),
    "public_url": Key("str"),
    "check_interval": Key("int", default=30, minimum=1),
    "max_restarts_per_hour": Key("int", default=5, minimum=0),
    "ready_failure_threshold": Key("int", default=2, minimum=1),
    "startup_timeout": Key("number", default=30, minimum=1),
    "settle_seconds": Key("number", default=2, minimum=0, help="a started connector must stay alive this long"),
    "log_file": Key("str"),
    "enabled": Key("bool", default=True),
}
