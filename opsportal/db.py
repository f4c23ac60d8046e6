"""Hardening of the portal's own database. INTERFACE STUB: the scheduling/hardening issue (#6)
adds retry (tenacity), the circuit breaker (pybreaker), the slow-query log and the spool."""

from __future__ import annotations

import time
from typing import Any

from django.db import DatabaseError, connection


def database_status() -> dict[str, Any]:
    """`database` of /health/status: {"status", "latencyMs", "circuitBreaker": {"state", "consecutiveFailures"}}."""
    start = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        status, latency = "up", round((time.perf_counter() - start) * 1000, 1)
    except DatabaseError:
        status, latency = "down", None
    return {
        "status": status,
        "vendor": connection.vendor,
        "latencyMs": latency,
        "circuitBreaker": {"state": "closed", "consecutiveFailures": 0},
    }


def reset_breaker() -> None:
    """Close the circuit breaker (the `reconnect_database` action calls this)."""
