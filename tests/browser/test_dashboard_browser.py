"""The dashboard in a real headless Chromium: log in, recover a down service, acknowledge, live refresh."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from health.models import Incident, ProbeResult, Service
from health.runner import run_round
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.browser.conftest import after_background_recovery, login, screenshot, wait_until
from tests.dashboard.dashboard_fixtures import threads_may_read
from tests.servers import Reply

pytestmark = pytest.mark.browser
__all__ = ["threads_may_read"]


@pytest.fixture
def broken_api(transactional_db, http_server):
    """An HTTP service that answers 503 until its recovery action POSTs /fix; probed HARD down."""
    state = {"fixed": False}

    def handler(request):
        if request["path"] == "/fix":
            state["fixed"] = True
            return Reply(200, "fixed")
        return Reply(200 if state["fixed"] else 503, "state")

    http_server.handler = handler
    svc = Service.objects.create(name="api", kind="http", settings={"url": http_server.url + "/health"}, timeout=2)
    Service.objects.create(name="db", kind="database")
    RecoveryAction.objects.create(
        service=svc, kind="http", settings={"url": http_server.url + "/fix", "method": "POST"}, verify_delay=0
    )
    services = list(Service.objects.all())
    history(services)
    for _ in range(2):
        run_round(services)
    svc.refresh_from_db()
    assert svc.status == "down" and svc.state_type == "hard"
    return svc


def history(services: list[Service]) -> None:
    """40 hours of results every 10 minutes, with a 6-hour gap where the monitor was not running."""
    now = timezone.now()
    rows = []
    for service in services:
        for k in range(6, 240):
            if 90 <= k < 126:
                continue
            status = "degraded" if k % 37 == 0 else "down" if (service.name == "api" and k % 53 == 0) else "up"
            latency = 20.0 + 15 * math.sin(k / 9) + (60 if status == "degraded" else 0)
            rows.append(
                ProbeResult(
                    service=service, checked_at=now - timedelta(minutes=10 * k), status=status, latency_ms=latency
                )
            )
    ProbeResult.objects.bulk_create(rows)


def test_it_logs_in_sees_the_down_service_and_recovers_it_in_two_clicks(
    page, staff_user, broken_api, threads_may_read, settings
):
    settings.DASHBOARD_REFRESH_SECONDS = 1  # the live partial shows the background recovery's outcome
    login(page, staff_user)
    card = page.locator("#svc-api")
    assert "down" in card.locator(".badge").first.inner_text()
    assert "HTTP 503" in card.inner_text() or "503" in card.inner_text()
    assert "Down" in page.locator("#overall").inner_text()
    assert page.locator(".incident").count() == 1
    screenshot(page, "overview-1280.png")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "overview-390.png")
    # No horizontal scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="dark")
    screenshot(page, "overview-1280-dark.png")
    page.emulate_media(color_scheme="light")

    page.get_by_role("link", name="Recover api…").click()  # click 1
    assert "Recover api?" in page.locator("h1").inner_text()
    assert "ready" in page.locator(".confirm").inner_text()
    page.get_by_role("button", name="Confirm recovery").click()  # click 2
    after_background_recovery(page, "api")
    attempts = page.locator("section[aria-labelledby=att-h]")
    assert "succeeded" in attempts.inner_text()
    assert "manual (ops)" in attempts.inner_text()
    screenshot(page, "service-1280.png")
    attempt = RecoveryAttempt.objects.get(service=broken_api)
    assert attempt.outcome == "succeeded" and attempt.requested_by == staff_user
    assert Service.objects.get(pk=broken_api.pk).status == "up"


def test_it_acknowledges_an_incident(page, staff_user, broken_api):
    login(page, staff_user)
    incident = Incident.objects.get(service=broken_api, resolved_at__isnull=True)
    page.locator(f"#ack-{incident.pk}").click()
    page.wait_for_load_state()
    assert "Acknowledged the incident of api." in page.locator(".messages").inner_text()
    assert "acknowledged by ops" in page.locator(f"#incident-{incident.pk}").inner_text()
    incident.refresh_from_db()
    assert incident.acknowledged_by == staff_user


def test_it_refreshes_on_its_own_when_a_probe_result_changes(page, staff_user, broken_api, settings, http_server):
    settings.DASHBOARD_REFRESH_SECONDS = 1
    login(page, staff_user)
    assert "down" in page.locator("#svc-api .badge").first.inner_text()
    page.evaluate("window.__noReload = 'still here'")
    top = page.locator("#svc-db").bounding_box()["y"]
    # A refresh with nothing changed swaps the region in place: nothing moves.
    wait_until(page, "document.querySelector('#live').hasAttribute('data-live-updated')")
    assert page.locator("#svc-db").bounding_box()["y"] == top

    http_server.handler = lambda request: Reply(200, "ok")
    run_round([Service.objects.get(pk=broken_api.pk)])

    wait_until(page, "document.querySelector('#svc-api .badge').textContent.trim().startsWith('up')")
    assert page.evaluate("window.__noReload") == "still here"  # swapped in place, not reloaded
    assert "Healthy" in page.locator("#overall").inner_text()
    assert page.locator(".incident").count() == 0
    # Logged out meanwhile (the session is gone): the page keeps its data and says it is no longer live.
    Session.objects.all().delete()
    wait_until(page, "document.querySelector('#live').hasAttribute('data-live-stale')")
    assert page.url == page.base + "/"
