from __future__ import annotations

import time

from django.db import DatabaseError, connection

from health.probes.base import UP, Probe, ProbeError, ProbeOutcome


class DatabaseProbe(Probe):
    """The portal's own database: `SELECT 1` on the default connection."""

    keys = {}

    def run(self) -> ProbeOutcome:
        start = time.perf_counter()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as exc:
            raise ProbeError(f"database error: {type(exc).__name__}: {str(exc).strip()[:200]}") from exc
        latency = (time.perf_counter() - start) * 1000
        return ProbeOutcome(UP, latency, f"{connection.vendor} answered SELECT 1")
