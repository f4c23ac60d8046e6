"""The base of every kind module (a probe kind, a recovery action kind): its keys and its validated config.

A kind declares its keys (core.spec.Key) next to the code that uses them; the config file, the admin and
the kind itself validate with them. A bad config raises the kind's own error (`config_error`), so a probe
reads as `misconfigured` and an action as a failed attempt.
"""

from __future__ import annotations

from typing import Any, ClassVar

from core.spec import ConfigError, Key, validate, with_defaults


class Configured:
    kind: ClassVar[str] = ""  # set by core.registry: the module's name
    keys: ClassVar[dict[str, Key]] = {}
    config_error: ClassVar[type[Exception]] = ConfigError

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None:
        spec = self.all_keys()
        try:
            self.cfg = with_defaults(spec, validate(spec, settings, "settings"))
        except ConfigError as exc:
            raise self.config_error(f"config error: {exc}") from exc
        self.timeout = timeout
        # Secrets met while running (expanded ${VAR}s, URL credentials): scrubbed from every detail.
        self.secrets: list[str] = []

    @classmethod
    def all_keys(cls) -> dict[str, Key]:
        return cls.keys

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        return validate(cls.all_keys(), settings, where)
