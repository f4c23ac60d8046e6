"""The probe contract: `run()` returns a ProbeOutcome or raises a ProbeError; it never sets state."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.envcheck import unset_fix
from core.kinds import Configured

UP, DEGRADED, DOWN = "up", "degraded", "down"
# The probe could not run as configured (an unset variable, a bad setting): no verdict on the target,
# so never downtime, an incident or a repair (docs/architecture.md).
MISCONFIGURED = "misconfigured"
FIX_MARK = "; fix: "
_UNSET = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set")


@dataclass
class ProbeOutcome:
    status: str
    latency_ms: float | None = None
    detail: str = ""
    # Secret values met while probing, scrubbed from the detail by the runner.
    secrets: list[str] = field(default_factory=list, repr=False)
    # When the certificate the probe read expires (tls, https): kept on the Service for /metrics.
    cert_expires_at: datetime | None = None
    # When the verdict will change by itself if nothing happens (a heartbeat's deadline): the scheduler looks
    # again then, not only at the next interval, so a late job is down at its due time.
    recheck_at: datetime | None = None


class ProbeError(Exception):
    """The target failed; the runner records it as `down` with this message as detail."""

    def __init__(self, message: str, *, cert_expires_at: datetime | None = None) -> None:
        super().__init__(message)
        self.cert_expires_at = cert_expires_at


class ProbeTimeout(ProbeError):
    pass


class ProbeConfigError(ProbeError):
    """The probe's configuration is wrong: the runner records `misconfigured`, with the fix."""


def config_fix(message: str) -> str:
    """The fix for a configuration error's message."""
    variables = list(dict.fromkeys(_UNSET.findall(message)))
    if variables:
        return "; ".join(unset_fix(v) for v in variables)
    return "correct the service's settings (the config file, then `manage.py importconfig`, or the admin)"


def fix_of(detail: str) -> str:
    """The fix a `misconfigured` detail carries ("" when it has none)."""
    return detail.partition(FIX_MARK)[2]


class Probe(Configured):
    config_error = ProbeConfigError

    def __init__(self, settings: dict[str, Any], *, timeout: float, service_name: str = "") -> None:
        super().__init__(settings, timeout=timeout)
        self.service_name = service_name

    def run(self) -> ProbeOutcome:  # pragma: no cover - the contract
        raise NotImplementedError
