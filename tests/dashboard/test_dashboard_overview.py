from __future__ import annotations

import pytest
from django.test import Client

from health.models import Incident
from recovery.models import RecoveryAction
from tests.dashboard.dashboard_fixtures import make_results, make_service, make_world, staff_client, user_client

__all__ = ["staff_client", "user_client"]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/", "/live/overview/"])
def test_it_sends_anonymous_users_to_the_login_page(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", ["/", "/live/overview/"])
def test_it_forbids_non_staff(user_client, url):
    response = user_client.get(url)
    assert response.status_code == 403
    assert b"Staff only" in response.content


def test_it_renders_with_no_services(staff_client):
    response = staff_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "No services yet" in body
    assert "No open incidents." in body


def test_it_shows_a_down_service_with_its_error_and_since_when(staff_client):
    svc = make_service("api", status="down", last_error="connection refused", consecutive_failures=3)
    make_results(svc, ["up", "up", "down", "down"])
    Incident.objects.create(service=svc, cause="connection refused")
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]})
    make_service("bare", status="down")  # no recovery action: no Recover button
    body = staff_client.get("/").content.decode()
    assert "/services/bare/recover/" not in body
    assert 'class="card st-down" id="svc-api"' in body
    assert "connection refused" in body
    assert "3 failures in a row" in body
    assert "/services/api/recover/" in body
    assert "Acknowledge" in body
    assert '<h1 id="overall"><span class="icon" aria-hidden="true"></span>Down</h1>' in body
    # 4 results in the last hour: 50 % uptime over each window
    assert "50.00%" in body


@pytest.mark.slow("renders 200 services")
def test_it_renders_200_services_in_a_bounded_number_of_queries(staff_client, django_assert_max_num_queries):
    make_world(1)
    with django_assert_max_num_queries(20) as small:
        assert staff_client.get("/").status_code == 200
    make_world(200, prefix="many", results_per_service=5)
    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        response = staff_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    # The banner counts every service; the cards come a page (60) at a time.
    assert '<span class="count">201</span>' in body and "page 1 of 4" in body
    assert body.count('class="card ') == 60
    assert len(large.captured_queries) == len(small.captured_queries)
    last = staff_client.get("/", {"page": 4}).content.decode()
    assert last.count('class="card ') == 201 - 3 * 60


def test_it_shows_problem_services_on_the_first_page(staff_client, settings):
    settings.DASHBOARD_CARDS_PER_PAGE = 2
    make_world(3, prefix="fine")
    make_service("zz-broken", status="down")
    body = staff_client.get("/").content.decode()
    assert 'id="svc-zz-broken"' in body  # last by name, first by need
    assert body.count('class="card ') == 2
    live = staff_client.get("/live/overview/", {"page": 2}).content.decode()
    assert "page 2 of 2" in live


@pytest.mark.parametrize("page", ["0", "-1", "x", "1.5"])
def test_it_refuses_a_bad_page(staff_client, page):
    response = staff_client.get("/", {"page": page})
    assert response.status_code == 400
    assert "page must be a positive whole number" in response.content.decode()


def test_it_serves_the_live_partial_without_the_page_frame(staff_client):
    make_service("web")
    body = staff_client.get("/live/overview/").content.decode()
    assert 'id="svc-web"' in body
    assert "<html" not in body


def test_it_shows_the_portal_version_and_menu(staff_client):
    import opsportal

    body = staff_client.get("/").content.decode()
    assert f"opsportal {opsportal.__version__}" in body
    assert "/admin/django_q/schedule/" in body
    assert "/admin/django_q/failure/" in body


def test_it_styles_the_login_page_to_match(db):
    body = Client().get("/accounts/login/?next=/").content.decode()
    assert "/static/opsportal.css" in body
    assert '<label for="id_username">Username</label>' in body
    assert 'name="csrfmiddlewaretoken"' in body


def test_it_links_admin_and_dashboard_both_ways(staff_client):
    staff_client.user.is_superuser = True
    staff_client.user.save()
    admin = staff_client.get("/admin/").content.decode()
    assert 'id="to-dashboard" href="/"' in admin
    assert "opsportal administration" in admin
    assert 'href="/admin/"' in staff_client.get("/").content.decode()


def test_it_shows_a_late_scheduler_and_says_degraded_as_the_api_does(staff_client):
    import datetime as dt

    from django.utils import timezone

    from core.models import SchedulerHeartbeat

    make_service("web", status="up")
    assert "Healthy</h1>" in staff_client.get("/").content.decode()
    SchedulerHeartbeat.objects.create(name="dispatcher", last_run_at=timezone.now() - dt.timedelta(minutes=10))
    body = staff_client.get("/").content.decode()
    assert "Degraded</h1>" in body
    assert '<span class="badge st-late">late</span>' in body


def test_it_logs_out_with_a_post_to_a_page_in_the_same_style(staff_client):
    assert 'action="/accounts/logout/"' in staff_client.get("/").content.decode()
    body = staff_client.post("/accounts/logout/").content.decode()
    assert "You have been logged out." in body and "/static/opsportal.css" in body
    assert staff_client.get("/").status_code == 302


@pytest.mark.django_db
def test_it_marks_flapping_and_maintenance_services(staff_client):
    from health.models import Service

    Service.objects.create(name="flappy", kind="tcp", settings={"host": "127.0.0.1", "port": 1}, flapping=True)
    Service.objects.create(name="resting", kind="tcp", settings={"host": "127.0.0.1", "port": 1}, in_maintenance=True)
    body = staff_client.get("/").content.decode()
    assert '<span class="badge st-degraded flag">flapping</span>' in body
    assert '<span class="badge st-paused flag">maintenance</span>' in body
    page = staff_client.get("/services/flappy/").content.decode()
    assert "flapping</span> (notifications held)" in page


@pytest.mark.django_db
def test_it_shows_the_build_in_the_footer(staff_client, monkeypatch):
    monkeypatch.setenv("BUILD_COMMIT", "0123456789abcdef")
    monkeypatch.setenv("BUILT_AT", "2026-11-28T12:00:00Z")
    body = staff_client.get("/").content.decode()
    assert '<code title="0123456789abcdef">0123456789</code>' in body
    assert "2026-11-28T12:00:00Z" in body


def test_it_shows_maintenance_hours_in_the_bar_and_leaves_them_out_of_uptime(staff_client):
    import datetime as dt

    from django.utils import timezone

    from health.models import ProbeResult

    svc = make_service("resting")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    ProbeResult.objects.bulk_create(
        [
            ProbeResult(service=svc, checked_at=hour + dt.timedelta(minutes=m), status="down", maintenance=True)
            for m in (5, 25, 45)
        ]
        + [ProbeResult(service=svc, checked_at=hour + dt.timedelta(hours=1, minutes=5), status="up", latency_ms=4.0)]
    )
    for page in (staff_client.get("/"), staff_client.get("/services/resting/")):
        body = page.content.decode()
        assert body.count('class="seg seg-maintenance"') == 1
        assert "3 in maintenance: not counted in uptime" in body
        assert body.count("<dd>100.00% <small") == 3 and "0.00%" not in body.replace("100.00%", "")
        assert body.count('title="3 results taken in maintenance, not counted">excl. maintenance</small>') == 3
