"""Django-Q2 task functions: thin wrappers the schedules name (see health.scheduler)."""

from __future__ import annotations

from health.scheduler import prune_history, run_dispatcher


def dispatch() -> str:
    """`opsportal-dispatch`, every minute: the claim loop that probes each service at its interval."""
    return run_dispatcher()


def prune() -> str:
    """`opsportal-prune`, daily: drop probe results older than RESULT_RETENTION_DAYS."""
    return f"pruned {prune_history()} probe results"
