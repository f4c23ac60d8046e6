from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.management import call_command


class HealthConfig(AppConfig):
    name = "health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_login_failed
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from health.config import config_imported
        from health.scheduler import schedules_on_import, schedules_on_migrate
        from opsportal.db import configure_breaker, install_slow_query_log
        from opsportal.login_throttle import on_locked_out, on_login_failed

        configure_breaker()
        # Every connection, in every process (web, qcluster, commands), logs its slow queries.
        connection_created.connect(install_slow_query_log, dispatch_uid="opsportal-slow-query-log")
        # Schedules exist once, by name, after every migrate and every config import.
        post_migrate.connect(schedules_on_migrate, sender=self, dispatch_uid="opsportal-schedules-migrate")
        config_imported.connect(schedules_on_import, dispatch_uid="opsportal-schedules-import")
        # The shared cache's table (the bearer-token limiter, Django-Q2's stats) exists after every migrate,
        # so an install made with a plain `migrate` works as one made with `quickstart`.
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="opsportal-cache-table")
        # Failed logins and lockouts go to system-monitor.log (without the password).
        user_login_failed.connect(on_login_failed, dispatch_uid="opsportal-login-failed")
        user_locked_out.connect(on_locked_out, dispatch_uid="opsportal-login-locked-out")


def create_cache_table(using: str = "default", verbosity: int = 1, **kwargs: Any) -> None:
    """post_migrate: `createcachetable` for the database caches in CACHES (a no-op for Redis, and when the
    table exists)."""
    call_command("createcachetable", database=using, verbosity=max(verbosity - 1, 0))
