"""The probe contract: `run()` returns a ProbeOutcome or raises a ProbeError; it never sets state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from opsportal.spec import ConfigError, Key, validate, with_defaults

UP, DEGRADED, DOWN = "up", "degraded", "down"


@dataclass
class ProbeOutcome:
    status: str
    latency_ms: float | None = None
    detail: str = ""
    # Secret values met while probing, scrubbed from the detail by the runner.
    secrets: list[str] = field(default_factory=list, repr=False)


class ProbeError(Exception):
    """The target failed; the runner records it as `down` with this message as detail."""


class ProbeTimeout(ProbeError):
    pass


class ProbeConfigError(ProbeError):
    pass


class Probe:
    kind: ClassVar[str] = ""
    keys: ClassVar[dict[str, Key]] = {}

    def __init__(self, settings: dict[str, Any], *, timeout: float, service_name: str = "") -> None:
        try:
            self.cfg = with_defaults(self.keys, validate(self.keys, settings, "settings"))
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from exc
        self.timeout = timeout
        self.service_name = service_name
        self.secrets: list[str] = []

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        return validate(cls.keys, settings, where)

    def run(self) -> ProbeOutcome:  # pragma: no cover - the contract
        raise NotImplementedError
