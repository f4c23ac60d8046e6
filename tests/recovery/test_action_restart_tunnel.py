"""The restart_tunnel recovery action, end to end through the recovery engine and a real connector."""

from __future__ import annotations

import os
import signal

import pytest

from health.models import Service
from health.runner import run_round
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt
from tests.tunnels.conftest import assert_clean, make_tunnel  # noqa: F401 - the fixture
from tunnels.models import TunnelEvent

pytestmark = pytest.mark.django_db


@pytest.mark.slow("restarts a fake connector and waits for the reprobe")
def test_it_restarts_the_tunnel_and_is_verified_by_the_reprobe(make_tunnel, make_service, add_action):  # noqa: F811
    fake = make_tunnel()
    old = fake.start()
    svc = make_service("edge-svc", url=fake.tunnel.ready_url)
    add_action(svc, "restart_tunnel", {"tunnel": "edge"})
    os.kill(old, signal.SIGKILL)
    run_round([svc])
    assert Service.objects.get(pk=svc.pk).status == "down"

    (result,) = recover_services(["edge-svc"], trigger="manual", via="test")

    assert result["success"] is True, result
    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert attempt.action_ok is True and "requested by recovery" in attempt.action_detail
    tunnel = fake.reload()
    assert tunnel.pid != old and tunnel.status == "up"
    assert tunnel.events.filter(kind=TunnelEvent.Kind.RESTARTED).count() == 2
    assert_clean(fake)


def test_it_fails_for_an_unknown_tunnel_without_starting_anything(make_service, add_action):
    svc = make_service("edge-svc")
    add_action(svc, "restart_tunnel", {"tunnel": "nope"})
    run_round([svc])
    (result,) = recover_services(["edge-svc"], trigger="manual", via="test")
    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert result["success"] is False and attempt.action_ok is False
    assert "unknown tunnel 'nope'" in attempt.action_detail
