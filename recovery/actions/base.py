"""The action contract: `run()` performs one repair and returns an ActionResult."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from opsportal.spec import ConfigError, Key, validate, with_defaults

if TYPE_CHECKING:
    from health.models import Service


@dataclass
class ActionResult:
    ok: bool
    detail: str = ""
    exit_code: int | None = None
    secrets: list[str] = field(default_factory=list, repr=False)


class ActionError(Exception):
    """The action could not be carried out; recorded as a failed attempt."""


class Action:
    kind: ClassVar[str] = ""
    keys: ClassVar[dict[str, Key]] = {}

    def __init__(self, settings: dict[str, Any], *, service: Service, timeout: float) -> None:
        try:
            self.cfg = with_defaults(self.keys, validate(self.keys, settings, "settings"))
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from exc
        self.service = service
        self.timeout = timeout
        self.secrets: list[str] = []

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        return validate(cls.keys, settings, where)

    def run(self) -> ActionResult:  # pragma: no cover - the contract
        raise NotImplementedError
