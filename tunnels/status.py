"""Tunnel state for /health/status. The tunnel watchdog issue (#5) refines this."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from tunnels.models import Tunnel, TunnelEvent


def tunnels_status() -> dict[str, dict[str, Any]]:
    """One entry per tunnel, in a constant number of queries."""
    hour_ago = timezone.now() - timedelta(hours=1)
    tunnels = Tunnel.objects.annotate(
        restarts_last_hour=Count(
            "events", filter=Q(events__kind=TunnelEvent.Kind.RESTARTED, events__created_at__gte=hour_ago)
        )
    )
    out = {}
    for t in tunnels:
        uptime = None
        if t.pid_create_time and t.status in ("up", "not_ready"):
            uptime = max(0, int(timezone.now().timestamp() - t.pid_create_time))
        out[t.name] = {
            "status": t.status,
            "pid": t.pid,
            "uptime": uptime,
            "readyConnections": t.ready_connections,
            "restartsLastHour": t.restarts_last_hour,
            "lastRestartAt": t.last_restart_at.isoformat() if t.last_restart_at else None,
            "lastCheckedAt": t.last_checked_at.isoformat() if t.last_checked_at else None,
            "detail": t.last_detail,
        }
    return out
