"""A tunnel connector that crashes at once, every time, for a simulated hour: exactly 5 restarts.

The real watchdog (`run_due`, as the dispatcher calls it) checks a real fake-cloudflared that exits as soon
as it starts; the clock is moved 30 s (the tunnel's check_interval) per check with time-machine, so an hour
of checks takes seconds. Each start is real: a process is spawned, dies, and is reaped.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from health.models import Event
from tests.tunnels.conftest import assert_clean, make_tunnel, zombie_children  # noqa: F401 — make_tunnel is a fixture
from tunnels import watchdog
from tunnels.models import Tunnel, TunnelEvent

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

Kind = TunnelEvent.Kind
INTERVAL_S = 30


def attempts(tunnel: Tunnel) -> int:
    return tunnel.events.filter(kind__in=TunnelEvent.RESTART_KINDS).count()


def test_it_restarts_a_crash_looping_connector_exactly_five_times_in_an_hour(make_tunnel) -> None:  # noqa: F811
    fake = make_tunnel("--exit-at-once", max_restarts_per_hour=5, settle_seconds=0.2, check_interval=INTERVAL_S)
    start = timezone.now()
    checks = 0
    for step in range(3600 // INTERVAL_S):  # 0 s … 59 min 30 s: one simulated hour
        with time_machine.travel(start + timedelta(seconds=step * INTERVAL_S), tick=True):
            checks += len(watchdog.run_due())
    tunnel = fake.reload()
    assert checks == 3600 // INTERVAL_S  # every slot was checked: the loop never stalled on the crashes
    assert attempts(tunnel) == 5
    assert tunnel.events.filter(kind=Kind.RESTART_FAILED).count() == 5
    assert tunnel.events.filter(kind=Kind.RESTARTED).count() == 0
    assert tunnel.events.filter(kind=Kind.RESTART_SUPPRESSED).count() == 1  # one notice, not 115
    assert Event.objects.filter(kind=Event.Kind.TUNNEL_RESTART_SUPPRESSED, subject=tunnel.name).count() == 1
    assert tunnel.status == Tunnel.Status.SUPPRESSED
    assert fake.processes() == [] and zombie_children() == []  # every crashed connector was reaped

    # The window rolls: an hour after the first attempt, one more is allowed (and it crashes too).
    first = tunnel.events.filter(kind=Kind.RESTART_FAILED).order_by("created_at").first()
    with time_machine.travel(first.created_at + timedelta(hours=1, seconds=INTERVAL_S), tick=True):
        watchdog.run_due()
    assert attempts(fake.reload()) == 6
    assert_clean(fake)
