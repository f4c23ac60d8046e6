"""The action contract: `run()` performs one repair and returns an ActionResult.

An action never writes state; the engine records its result and verifies by re-probing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from opsportal.spec import ConfigError, Key, validate, with_defaults

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


class Action:
    kind: ClassVar[str] = ""
    keys: ClassVar[dict[str, Key]] = {}

    def __init__(self, settings: dict[str, Any], *, service: Service, timeout: float) -> None:
        try:
            spec = self.all_keys()
            self.cfg = with_defaults(spec, validate(spec, settings, "settings"))
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from exc
        self.service = service
        self.timeout = timeout
        self.secrets: list[str] = []

    @classmethod
    def all_keys(cls) -> dict[str, Key]:
        return {**cls.keys, **COMMON_KEYS}

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        return validate(cls.all_keys(), settings, where)

    def run(self) -> ActionResult:  # pragma: no cover - the contract
        raise NotImplementedError


def tail(text: str, lines: int = OUTPUT_LINES, chars: int = OUTPUT_CHARS) -> str:
    """The last lines of some output, bounded, for an attempt's detail."""
    kept = "\n".join(text.strip().splitlines()[-lines:])
    return kept[-chars:]
