from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from health.models import Incident
from recovery.models import RecoveryAttempt
from tests.dashboard.dashboard_fixtures import make_service, make_world, staff_client, user_client

__all__ = ["staff_client", "user_client"]

pytestmark = pytest.mark.django_db

PAGES = ["/incidents/", "/recovery/"]


@pytest.mark.parametrize("url", PAGES)
def test_it_sends_anonymous_users_to_the_login_page(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", PAGES)
def test_it_forbids_non_staff(user_client, url):
    assert user_client.get(url).status_code == 403


@pytest.mark.parametrize(
    ("url", "empty"), [("/incidents/", "No incidents match."), ("/recovery/", "No recovery attempts match.")]
)
def test_it_renders_empty(staff_client, url, empty):
    response = staff_client.get(url)
    assert response.status_code == 200
    assert empty in response.content.decode()


@pytest.mark.parametrize("url", PAGES)
def test_it_renders_200_services_in_a_bounded_number_of_queries(staff_client, url, django_assert_max_num_queries):
    make_world(3)
    with django_assert_max_num_queries(10) as few:
        assert staff_client.get(url).status_code == 200
    make_world(200, prefix="many")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = staff_client.get(url)
    assert "Page 1 of 2" in response.content.decode()


def test_it_filters_incidents(staff_client):
    api, db = make_service("api", status="down"), make_service("db")
    Incident.objects.create(service=api, cause="api-open")
    Incident.objects.create(service=db, cause="db-resolved", resolved_at=timezone.now(), severity="warning")
    open_only = staff_client.get("/incidents/?state=open").content.decode()
    assert "api-open" in open_only and "db-resolved" not in open_only
    resolved = staff_client.get("/incidents/?state=resolved&severity=warning").content.decode()
    assert "db-resolved" in resolved and "api-open" not in resolved
    by_service = staff_client.get("/incidents/?service=db").content.decode()
    assert "db-resolved" in by_service and "api-open" not in by_service


def test_it_filters_recovery_attempts(staff_client):
    api = make_service("api")
    RecoveryAttempt.objects.create(service=api, trigger="auto", outcome="failed", detail="auto-failed")
    RecoveryAttempt.objects.create(service=api, trigger="manual", outcome="succeeded", detail="manual-ok")
    body = staff_client.get("/recovery/?trigger=manual").content.decode()
    assert "manual-ok" in body and "auto-failed" not in body
    body = staff_client.get("/recovery/?outcome=failed&service=api").content.decode()
    assert "auto-failed" in body and "manual-ok" not in body


@pytest.mark.parametrize(
    "url", ["/incidents/?state=bogus", "/recovery/?outcome=bogus", "/recovery/?service=Not%20A%20Slug"]
)
def test_it_rejects_a_bad_filter_with_a_clear_error(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 400
    assert b"Bad filter:" in response.content


def test_it_keeps_the_filter_across_pages(staff_client):
    api = make_service("api")
    RecoveryAttempt.objects.bulk_create(
        RecoveryAttempt(service=api, trigger="auto", outcome="failed") for _ in range(60)
    )
    body = staff_client.get("/recovery/?trigger=auto").content.decode()
    assert 'href="?trigger=auto&amp;page=2"' in body
    assert "Page 2 of 2" in staff_client.get("/recovery/?trigger=auto&page=2").content.decode()
