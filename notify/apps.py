from __future__ import annotations

from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: apps.py is imported before the models are. Its deliveries in an incident's
        # timeline (health.timeline cannot import notify).
        from notify import timeline

        timeline.register_source()
