from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class StatusConfig(AppConfig):
    name = "status"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from status.middleware import forget_hosts
        from status.models import StatusPage

        post_save.connect(forget_hosts, sender=StatusPage, dispatch_uid="status-forget-hosts-save")
        post_delete.connect(forget_hosts, sender=StatusPage, dispatch_uid="status-forget-hosts-delete")
