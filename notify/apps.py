from __future__ import annotations

from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: apps.py is imported before the models are.
        from core.signals import events_written
        from health.models import Event
        from notify import timeline
        from notify.realtime import on_events_written

        # Its deliveries in an incident's timeline (health.timeline cannot import notify).
        timeline.register_source()
        # Every outbox insert, whoever writes it: sent seconds after its commit (the schedule is the safety net).
        events_written.connect(on_events_written, sender=Event, dispatch_uid="opsportal-notify-on-commit")
