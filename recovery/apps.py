from __future__ import annotations

from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: apps.py is imported before the models are; these modules import models.
        from core import spool
        from recovery import engine, timeline

        # An escalation the database could not take is spooled and replayed here.
        spool.register("recovery_escalation", engine.replay_escalation)
        # Its attempts in an incident's timeline (health.timeline cannot import recovery).
        timeline.register_source()
