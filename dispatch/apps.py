from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from core.signals import config_imported


class DispatchConfig(AppConfig):
    name = "dispatch"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: apps.py is imported before the models are; these modules import models.
        from dispatch.scheduler import schedules_on_import, schedules_on_migrate
        from dispatch.tasks import notify_now
        from notify.realtime import register_enqueuer

        # Schedules exist once, by name, after every migrate and every config import.
        post_migrate.connect(schedules_on_migrate, sender=self, dispatch_uid="opsportal-schedules-migrate")
        config_imported.connect(schedules_on_import, dispatch_uid="opsportal-schedules-import")
        # Notifications on commit go to a live cluster as the notify task (else notify sends them in process).
        register_enqueuer(notify_now)
