from __future__ import annotations

from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import spool
        from recovery import engine

        # An escalation the database could not take is spooled and replayed here.
        spool.register("recovery_escalation", engine.replay_escalation)
