from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.tunnels.conftest import assert_clean
from tunnels import watchdog
from tunnels.models import Tunnel, TunnelEvent
from tunnels.status import tunnels_status

pytestmark = pytest.mark.django_db
Kind = TunnelEvent.Kind


def test_it_reports_a_running_tunnel(make_tunnel):
    fake = make_tunnel()
    pid = fake.start()
    watchdog.check_now(fake.reload())
    status = tunnels_status()["edge"]
    assert status["status"] == "up" and status["pid"] == pid
    assert status["readyConnections"] == 4 and status["restartsLastHour"] == 1
    assert isinstance(status["uptime"], int) and status["uptime"] >= 0
    assert status["lastRestartAt"] is not None and status["lastCheckedAt"] is not None
    assert [p.pid for p in fake.processes()] == [pid]
    assert_clean(fake)


def test_it_reports_an_unchecked_tunnel_as_unknown():
    Tunnel.objects.create(name="edge", command=["cloudflared"])
    assert tunnels_status()["edge"] == {
        "status": "unknown",
        "enabled": True,
        "pid": None,
        "uptime": None,
        "readyConnections": None,
        "restartsLastHour": 0,
        "maxRestartsPerHour": 5,
        "lastRestartAt": None,
        "lastCheckedAt": None,
        "detail": "",
    }


def test_it_counts_restart_attempts_in_the_last_hour_only():
    tunnel = Tunnel.objects.create(name="edge", command=["cloudflared"], status=Tunnel.Status.SUPPRESSED)
    now = timezone.now()
    for minutes, kind in ((5, Kind.RESTARTED), (10, Kind.RESTART_FAILED), (30, Kind.CHECK_OK), (70, Kind.RESTARTED)):
        TunnelEvent.objects.create(tunnel=tunnel, kind=kind, created_at=now - timedelta(minutes=minutes))
    status = tunnels_status()["edge"]
    assert status["restartsLastHour"] == 2 and status["status"] == "suppressed"
    assert tunnel.restarts_in_window() == 2


def test_it_reads_any_number_of_tunnels_in_one_query():
    for i in range(5):
        t = Tunnel.objects.create(name=f"t{i}", command=["cloudflared"])
        TunnelEvent.objects.create(tunnel=t, kind=Kind.RESTARTED)
    with CaptureQueriesContext(connection) as one:
        tunnels_status()
    for i in range(5, 15):
        Tunnel.objects.create(name=f"t{i}", command=["cloudflared"])
    with CaptureQueriesContext(connection) as many:
        assert len(tunnels_status()) == 15
    assert len(one) == len(many) == 1
