"""Tunnel state for /health/status, in a constant number of queries however many tunnels."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from tunnels.models import Tunnel, TunnelEvent


def tunnels_status() -> dict[str, dict[str, Any]]:
    """One entry per tunnel: status, pid, uptime, readyConnections, restartsLastHour, lastRestartAt, lastCheckedAt.

    `restartsLastHour` counts restart attempts (succeeded or failed): the number the hourly limit uses.
    """
    now = timezone.now()
    hour_ago = now - Tunnel.RESTART_WINDOW
    restarts = Q(events__kind__in=TunnelEvent.RESTART_KINDS, events__created_at__gt=hour_ago)
    tunnels = Tunnel.objects.annotate(restarts_last_hour=Count("events", filter=restarts))
    out = {}
    for t in tunnels:
        uptime = None
        if t.pid_create_time and t.status in (Tunnel.Status.UP, Tunnel.Status.NOT_READY):
            uptime = max(0, int(now.timestamp() - t.pid_create_time))
        out[t.name] = {
            "status": t.status,
            "enabled": t.enabled,
            "pid": t.pid,
            "uptime": uptime,
            "readyConnections": t.ready_connections,
            "restartsLastHour": t.restarts_last_hour,
            "maxRestartsPerHour": t.max_restarts_per_hour,
            "lastRestartAt": t.last_restart_at.isoformat() if t.last_restart_at else None,
            "lastCheckedAt": t.last_checked_at.isoformat() if t.last_checked_at else None,
            "detail": t.last_detail,
        }
    return out
