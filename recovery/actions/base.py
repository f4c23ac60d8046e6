"""The action contract: `run()` performs one repair and returns an ActionResult.

An action never writes state; the engine records its result and verifies by re-probing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings

from core.kinds import Configured
from core.spec import ConfigError, Key
from recovery.spec import RECOVERY_KEYS

if TYPE_CHECKING:
    from health.models import Service

# Keys every action kind accepts, next to its own.
COMMON_KEYS: dict[str, Key] = {
    "verify_degraded": Key("bool", default=False, help="a `degraded` probe after the action also counts as fixed"),
}
# How much of a command's output an attempt keeps.
OUTPUT_LINES = 20
OUTPUT_CHARS = 2000


@dataclass
class ActionResult:
    ok: bool
    detail: str = ""
    exit_code: int | None = None
    secrets: list[str] = field(default_factory=list, repr=False)
    data: dict[str, Any] = field(default_factory=dict)


class ActionError(Exception):
    """The action could not be carried out; recorded as a failed attempt."""


class Action(Configured):
    config_error = ActionError

    def __init__(self, settings: dict[str, Any], *, service: Service, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        self.service = service

    @classmethod
    def all_keys(cls) -> dict[str, Key]:
        return {**cls.keys, **COMMON_KEYS}

    def run(self) -> ActionResult:  # pragma: no cover - the contract
        raise NotImplementedError


def stale_bound_problem(timeout: Any, verify_delay: Any, verify_wait: float = 0.0) -> str:
    """Why an action's `timeout + verify_delay` (+ the wait for a heartbeat's proof ping, health.probes.push
    .verify_wait) is refused ("" when it fits). An attempt must end within RECOVERY_STALE_AFTER: the bound after
    which a claim without a known owner is taken over by its age, and the bound doctor holds every action to.
    Shared by importconfig, the admin and doctor."""
    try:
        total = float(timeout) + float(verify_delay) + float(verify_wait)
    except (TypeError, ValueError):
        return ""  # the key's own validation names that
    bound = django_settings.RECOVERY_STALE_AFTER
    if total <= bound:
        return ""
    what = (
        "timeout + verify_delay + the wait for a success ping (verify_timeout, else grace)"
        if verify_wait
        else ("timeout + verify_delay")
    )
    return (
        f"{what} is {total:g} s, more than RECOVERY_STALE_AFTER ({bound} s): "
        "shorten the action or raise RECOVERY_STALE_AFTER"
    )


def check_stale_bound(values: dict[str, Any], where: str, verify_wait: float = 0.0) -> None:
    """importconfig: a `[[service.recovery]]` table's validated keys (defaults for the missing ones) must fit
    the stale bound; a ConfigError naming `<where>.timeout` otherwise."""
    timeout = values.get("timeout", RECOVERY_KEYS["timeout"].default)
    verify_delay = values.get("verify_delay", RECOVERY_KEYS["verify_delay"].default)
    problem = stale_bound_problem(timeout, verify_delay, verify_wait)
    if problem:
        raise ConfigError(f"{where}.timeout", problem)


def tail(text: str, lines: int = OUTPUT_LINES, chars: int = OUTPUT_CHARS) -> str:
    """The last lines of some output, bounded, for an attempt's detail."""
    kept = "\n".join(text.strip().splitlines()[-lines:])
    return kept[-chars:]
