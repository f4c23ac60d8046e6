from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.management import call_command
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate

from core.db import configure_breaker, install_slow_query_log


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        configure_breaker()
        # Every connection, in every process (web, qcluster, commands), logs its slow queries.
        connection_created.connect(install_slow_query_log, dispatch_uid="opsportal-slow-query-log")
        # The shared cache's table (the bearer-token limiter, Django-Q2's stats) exists after every migrate,
        # so an install made with a plain `migrate` works as one made with `quickstart`.
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="opsportal-cache-table")


def create_cache_table(using: str = "default", verbosity: int = 1, **kwargs: Any) -> None:
    """post_migrate: `createcachetable` for the database caches in CACHES (a no-op for Redis, and when the
    table exists)."""
    call_command("createcachetable", database=using, verbosity=max(verbosity - 1, 0))
