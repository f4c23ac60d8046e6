"""Django-Q2 task functions: thin wrappers the schedules name (see health.scheduler)."""

from __future__ import annotations

from health.scheduler import run_dispatcher


def dispatch() -> str:
    """`opsportal-dispatch`, every minute: the claim loop that probes each service at its interval."""
    return run_dispatcher()


def prune() -> str:
    """`opsportal-prune`, hourly: roll up, then drop probe results older than RAW_RETENTION_DAYS (in batches)."""
    from health.rollups import prune as prune_results
    from health.scheduler import forget_dead_loops

    forget_dead_loops()
    return prune_results().summary()


def notify() -> str:
    """`opsportal-notify`, every minute: deliver the outbox (health.notify)."""
    from health.notify import process_outbox

    return process_outbox()
