"""Recovery action kinds: one module a kind; the registry key is the module name."""

from __future__ import annotations

from core.registry import Registry
from recovery.actions.base import Action, ActionError, ActionResult

registry: Registry[type[Action]] = Registry("recovery.actions", Action)

__all__ = ["Action", "ActionError", "ActionResult", "registry"]
