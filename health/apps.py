from __future__ import annotations

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from health.config import config_imported
        from health.scheduler import schedules_on_import, schedules_on_migrate
        from opsportal.db import configure_breaker, install_slow_query_log

        configure_breaker()
        # Every connection, in every process (web, qcluster, commands), logs its slow queries.
        connection_created.connect(install_slow_query_log, dispatch_uid="opsportal-slow-query-log")
        # Schedules exist once, by name, after every migrate and every config import.
        post_migrate.connect(schedules_on_migrate, sender=self, dispatch_uid="opsportal-schedules-migrate")
        config_imported.connect(schedules_on_import, dispatch_uid="opsportal-schedules-import")
