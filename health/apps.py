from __future__ import annotations

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: apps.py is imported before the models are; these modules import models.
        from core import db, spool
        from health import events, pings, runner

        # A round the database could not take is spooled as `probe_round` and replayed here.
        spool.register("probe_round", runner.replay_round)
        # A ping by name while the database was away: its service is looked up when it is replayed.
        spool.register("named_ping", pings.replay_named)
        # The breaker's state changes become outbox events (health owns the table).
        db.register_event_writer(events.write_breaker_events)
