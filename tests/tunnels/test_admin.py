from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.tunnels.conftest import assert_clean
from tunnels.models import Tunnel, TunnelEvent

pytestmark = pytest.mark.django_db
Kind = TunnelEvent.Kind


def tunnel_with_events(name: str) -> Tunnel:
    tunnel = Tunnel.objects.create(name=name, command=["cloudflared", "tunnel", "run"], status=Tunnel.Status.UP, pid=42)
    TunnelEvent.objects.create(tunnel=tunnel, kind=Kind.RESTARTED, pid=42, detail="restarted (process not running)")
    TunnelEvent.objects.create(tunnel=tunnel, kind=Kind.ORIGIN_UNREACHABLE, pid=42, detail="HTTP 502 (expected 2xx)")
    return tunnel


def test_it_lists_tunnels_with_their_last_event_and_restarts(admin_client):
    tunnel_with_events("edge")
    page = admin_client.get("/admin/tunnels/tunnel/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "edge" in text and "origin_unreachable @" in text and "1 / 5" in text


def test_it_lists_any_number_of_tunnels_in_a_constant_number_of_queries(admin_client):
    tunnel_with_events("a")
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get("/admin/tunnels/tunnel/").status_code == 200
    for i in range(6):
        tunnel_with_events(f"t{i}")
    with CaptureQueriesContext(connection) as seven:
        assert admin_client.get("/admin/tunnels/tunnel/").status_code == 200
    assert len(one) == len(seven)


def test_it_shows_the_recent_events_on_the_tunnel_page(admin_client):
    tunnel = tunnel_with_events("edge")
    page = admin_client.get(f"/admin/tunnels/tunnel/{tunnel.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "restarted (process not running)" in text and "HTTP 502 (expected 2xx)" in text


def test_it_keeps_events_read_only(admin_client):
    tunnel_with_events("edge")
    assert admin_client.get("/admin/tunnels/tunnelevent/").status_code == 200
    assert admin_client.get("/admin/tunnels/tunnelevent/add/").status_code == 403


def test_it_needs_a_staff_login(client):
    page = client.get("/admin/tunnels/tunnel/")
    assert page.status_code == 302 and "/login/" in page["Location"]


@pytest.mark.slow("starts and restarts a fake connector")
def test_it_checks_and_restarts_from_the_admin(admin_client, make_tunnel):
    fake = make_tunnel()
    old = fake.start()
    url = "/admin/tunnels/tunnel/"
    page = admin_client.post(url, {"action": "check_now", "_selected_action": [fake.tunnel.pk]}, follow=True)
    notes = [str(m) for m in page.context["messages"]]
    assert any(n.startswith(f"edge: up (PID: {old})") for n in notes), notes
    assert fake.reload().events.filter(kind=Kind.CHECK_OK).count() == 1

    page = admin_client.post(url, {"action": "restart_now", "_selected_action": [fake.tunnel.pk]}, follow=True)
    assert "requested by admin in the admin" in page.content.decode()
    assert fake.reload().pid != old and fake.reload().status == Tunnel.Status.UP
    assert_clean(fake)


def test_it_refuses_admin_actions_without_csrf(make_tunnel, admin_user):
    fake = make_tunnel()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = client.post("/admin/tunnels/tunnel/", {"action": "restart_now", "_selected_action": [fake.tunnel.pk]})
    assert page.status_code == 403
    assert not fake.reload().events.exists() and fake.processes() == []
