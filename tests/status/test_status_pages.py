"""Status pages over real HTTP (Django's test client): what a logged-out visitor sees at /status/<slug>/ and on
the page's own host name, and what they never see."""

from __future__ import annotations

import datetime as dt
import json
import re

import feedparser
import pytest
from django.contrib.staticfiles import finders
from django.test import override_settings
from django.utils import timezone

from health.models import MaintenanceWindow, ProbeResult
from status.models import StatusPage
from tests.factories import ServiceFactory
from tests.status.status_fixtures import (
    SECRET_CAUSE,
    SECRET_DETAIL,
    SECRET_ERROR,
    day_rollups,
    down_service,
    make_page,
    open_incident,
)

pytestmark = pytest.mark.django_db
# Fragments of the internal detail: none may appear anywhere on a page without show_details.
INTERNAL = (
    "db-internal-7",
    "5432",
    "password authentication",
    "10.20.30.40",
    "ECONNREFUSED",
    "Traceback",
    "internal.example.net",
    "127.0.0.1",
)


def fetch_all(client, slug: str, **extra) -> tuple[str, str, str]:
    html = client.get(f"/status/{slug}/", **extra)
    summary = client.get(f"/status/{slug}/summary.json", **extra)
    feed = client.get(f"/status/{slug}/feed.atom", **extra)
    assert (html.status_code, summary.status_code, feed.status_code) == (200, 200, 200)
    return html.content.decode(), summary.content.decode(), feed.content.decode()


def test_it_shows_a_public_page_logged_out_with_the_state_in_words_and_colour(client):
    api = ServiceFactory(name="api-backend", status="up", last_checked_at=timezone.now())
    db = down_service("db-primary")
    make_page("public", [api, db], display={"api-backend": "API", "db-primary": "Database"}, description="Our services")
    open_incident(db, updates=[("investigating", "We are looking into failed logins.", True)])

    response = client.get("/status/public/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Public status" in html and "Our services" in html
    # Overall: a critical service HARD down is a major outage, in words and in its colour class.
    assert re.search(
        r'class="banner st-down"[^>]*>\s*<span class="icon" aria-hidden="true"></span>'
        r'<strong id="overall">Major outage',
        html,
    )
    assert '<span class="state st-up"><span class="icon" aria-hidden="true"></span>Operational</span>' in html
    assert '<span class="state st-down"><span class="icon" aria-hidden="true"></span>Major outage</span>' in html
    assert "Database outage" in html and "We are looking into failed logins." in html
    assert html.count('class="seg seg-') == 2 * 90
    assert response["Cache-Control"] == "public, max-age=30"


def test_it_never_shows_a_service_it_does_not_list_nor_internal_detail_in_html_json_or_feed(client):
    listed = down_service("payments-db-primary")
    hidden = down_service("secret-internal-ldap")
    make_page("public", [listed], display={"payments-db-primary": "Payments"})
    open_incident(
        listed,
        updates=[
            ("identified", "A database node failed; we are moving to a replica.", True),
            ("identified", "internal: failover via 10.20.30.40 runbook", False),
        ],
    )
    open_incident(hidden, updates=[("investigating", "LDAP is down for everyone", True)])
    ProbeResult.objects.create(service=listed, status="down", detail=SECRET_DETAIL)

    for body in fetch_all(client, "public"):
        assert "Payments" in body
        assert "A database node failed" in body
        for unwanted in ("secret-internal-ldap", "LDAP is down", "payments-db-primary", "runbook", *INTERNAL):
            assert unwanted not in body, unwanted


def test_it_shows_the_details_only_when_show_details_is_on(client):
    db = down_service("db")
    make_page("staff", [db], show_details=True)
    open_incident(db)

    html, summary, feed = fetch_all(client, "staff")

    assert SECRET_DETAIL in html and SECRET_CAUSE in html and SECRET_ERROR in html
    assert json.loads(summary)["components"][0]["description"] == SECRET_DETAIL
    assert SECRET_CAUSE in feedparser.parse(feed).entries[0].summary


def test_it_answers_an_unknown_slug_with_the_404_page(client):
    make_page("public", [])
    for url in ("/status/nope/", "/status/nope/summary.json", "/status/nope/feed.atom"):
        response = client.get(url)
        assert response.status_code == 404, url
    assert "Not found" in client.get("/status/nope/").content.decode()


def test_it_sends_a_visitor_to_the_login_for_a_private_page_and_shows_it_after(client, django_user_model):
    make_page("internal", [ServiceFactory(name="web")], public=False, title="Internal")

    for url in ("/status/internal/", "/status/internal/summary.json", "/status/internal/feed.atom"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/accounts/login/?next={url}"

    client.force_login(django_user_model.objects.create_user("viewer", password="x-long-password-1"))
    response = client.get("/status/internal/")
    assert response.status_code == 200 and "Internal" in response.content.decode()
    assert "private" in response["Cache-Control"]


@override_settings(ALLOWED_HOSTS=["testserver", "status.example.com"])
def test_it_serves_a_page_at_the_root_of_its_hostname_and_the_dashboard_elsewhere(client):
    make_page("public", [ServiceFactory(name="web", status="up")], hostname="status.example.com", title="Example")

    page = client.get("/", HTTP_HOST="status.example.com")
    assert page.status_code == 200
    assert "<h1>Example</h1>" in page.content.decode()
    summary = client.get("/summary.json", HTTP_HOST="status.example.com:443")
    assert summary.json()["page"]["url"] == "http://status.example.com:443/"
    assert 'href="http://status.example.com/feed.atom"' in page.content.decode()
    assert client.get("/feed.atom", HTTP_HOST="status.example.com").status_code == 200

    # Any other host: the portal's own `/`, which wants a login.
    assert client.get("/").status_code == 302
    # Other paths on the page's host are the portal's as usual.
    assert client.get("/status/public/", HTTP_HOST="status.example.com").status_code == 200
    assert client.get("/health/live", HTTP_HOST="status.example.com").status_code == 200


def test_it_refuses_a_hostname_that_is_not_in_allowed_hosts(client):
    make_page("public", [], hostname="status.example.com")
    assert client.get("/", HTTP_HOST="status.example.com").status_code == 400


@pytest.mark.slow("builds 22 services, each with incidents, updates and a day of hourly rollups")
def test_it_reads_a_constant_number_of_queries_for_2_and_20_services(client, django_assert_max_num_queries):
    def count(n: int) -> int:
        StatusPage.objects.all().delete()
        services = [down_service(f"svc-{n}-{i}") for i in range(n)]
        make_page("public", services)
        now = timezone.now()
        for s in services:
            open_incident(s, updates=[("investigating", "looking", True)])
            day_rollups(s, (now - dt.timedelta(days=3)).date(), up=10)
            ProbeResult.objects.create(service=s, status="up")
        MaintenanceWindow.objects.create(
            name=f"w-{n}",
            service=services[0],
            starts_at=now + dt.timedelta(days=1),
            ends_at=now + dt.timedelta(days=1, hours=1),
        )
        with override_settings(STATUS_PAGE_CACHE_SECONDS=0), django_assert_max_num_queries(15) as queries:
            assert client.get("/status/public/").status_code == 200
        return len(queries.captured_queries)

    assert count(2) == count(20)


def test_it_serves_the_page_from_the_cache_until_its_ttl(client, django_assert_max_num_queries):
    web = ServiceFactory(name="web", status="up")
    make_page("public", [web])
    assert "Operational" in client.get("/status/public/").content.decode()
    web.status, web.state_type = "down", "hard"
    web.save()

    with django_assert_max_num_queries(2):  # the cache read (the database cache) and the session, at most
        html = client.get("/status/public/").content.decode()
    assert "All systems operational" in html  # still the cached snapshot
    with override_settings(STATUS_PAGE_CACHE_SECONDS=0):
        assert "Major outage" in client.get("/status/public/").content.decode()


def test_it_draws_90_days_with_no_data_maintenance_and_outages_as_such(client):
    web = ServiceFactory(name="web", status="up")
    make_page("public", [web])
    today = timezone.now().astimezone(dt.UTC).date()
    day_rollups(web, today - dt.timedelta(days=10), up=60)
    day_rollups(web, today - dt.timedelta(days=9), up=30, down=30)
    day_rollups(web, today - dt.timedelta(days=8), count=60, up=60, maintenance=60)
    day_rollups(web, today - dt.timedelta(days=7), up=59, down=1)
    # The day before yesterday has no result at all: "no data", never up.

    html = client.get("/status/public/").content.decode()

    def segment(day: dt.date) -> str:
        found = re.search(rf'<rect class="seg seg-([a-z]+)"[^>]*><title>{day:%Y-%m-%d}: ([^<]*)</title>', html)
        assert found, day
        return f"{found[1]}: {found[2]}"

    assert segment(today - dt.timedelta(days=10)) == "up: 100 % up"
    assert segment(today - dt.timedelta(days=9)) == "down: 50 % up"
    assert segment(today - dt.timedelta(days=8)) == "maintenance: maintenance"
    assert segment(today - dt.timedelta(days=7)) == "degraded: 98.33 % up"
    assert segment(today - dt.timedelta(days=2)) == "none: no data"
    assert segment(today - dt.timedelta(days=89)) == "none: no data"
    assert "86 days no data" in html  # the bar's text alternative counts the days by state
    # 60*24 + 30*24 + 59*24 answered of 60*24*3 that counted (maintenance left out).
    assert f"{100 * 149 / 180:.2f} % uptime" in html


def test_it_reads_today_from_raw_results_when_nothing_is_rolled_up(client):
    web = ServiceFactory(name="web", status="up")
    make_page("public", [web])
    ProbeResult.objects.create(service=web, status="up")
    ProbeResult.objects.create(service=web, status="down")
    html = client.get("/status/public/").content.decode()
    assert f"{timezone.now().astimezone(dt.UTC):%Y-%m-%d}: 50 % up" in html


def test_it_lists_current_and_upcoming_maintenance_and_the_past_90_days_of_incidents(client):
    web = ServiceFactory(name="web", status="up")
    other = ServiceFactory(name="other", status="up")
    make_page("public", [web], display={"web": "Website"})
    now = timezone.now()
    MaintenanceWindow.objects.create(
        name="now",
        service=web,
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=1),
        reason="swap disks on rack 4",
    )
    MaintenanceWindow.objects.create(name="soon", service=None, cron="30 3 * * *")
    MaintenanceWindow.objects.create(
        name="not-ours",
        service=other,
        starts_at=now + dt.timedelta(days=2),
        ends_at=now + dt.timedelta(days=2, hours=1),
    )
    recent = open_incident(web, opened_at=now - dt.timedelta(days=20), updates=[("resolved", "Fixed the CDN.", True)])
    recent.resolved_at = now - dt.timedelta(days=20) + dt.timedelta(hours=2)
    recent.save()
    old = open_incident(web, opened_at=now - dt.timedelta(days=120), updates=[("resolved", "Ancient history.", True)])
    old.resolved_at = now - dt.timedelta(days=119)
    old.save()

    html, summary, _ = fetch_all(client, "public")

    now_panel = html.split('id="h-now-maint"')[1].split("</section>")[0]
    assert "Scheduled maintenance: Website" in now_panel and "swap disks" not in html
    upcoming = html.split('id="h-next-maint"')[1].split("</section>")[0]
    assert "03:30" in upcoming and "Scheduled maintenance: Website" in upcoming
    assert html.count("Scheduled maintenance") == 2  # not the other service's window
    past = html.split('id="h-past"')[1].split("</section>")[0]
    assert "Fixed the CDN." in past and "Ancient history." not in html
    assert "Website outage" in past and "2\xa0hours" in past
    maint = json.loads(summary)["scheduled_maintenances"]
    assert [m["status"] for m in maint] == ["in_progress", "scheduled"]


def test_it_says_under_maintenance_when_the_only_trouble_is_a_window(client):
    web = ServiceFactory(name="web", status="up", in_maintenance=True)
    make_page("public", [web, ServiceFactory(name="api", status="up")])
    html = client.get("/status/public/").content.decode()
    assert '<strong id="overall">Under maintenance</strong>' in html
    assert "st-maintenance" in html


def test_it_sends_the_sites_csp_and_needs_no_inline_script_or_style(client):
    make_page("public", [ServiceFactory(name="web", status="up")])
    response = client.get("/status/public/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert finders.find("status/status.css")  # the app's stylesheet, collected with the others


def test_it_refuses_a_post(client):
    make_page("public", [])
    assert client.post("/status/public/").status_code == 405


@override_settings(ALLOWED_HOSTS=["testserver", "status.example.com"])
def test_it_gives_the_root_back_to_the_portal_when_the_hosts_page_is_gone(client):
    page = make_page("public", [], hostname="status.example.com")
    assert client.get("/", HTTP_HOST="status.example.com").status_code == 200
    StatusPage.objects.filter(pk=page.pk).delete()  # a queryset delete: no signal, the map is stale
    assert client.get("/", HTTP_HOST="status.example.com").status_code == 302  # the dashboard's login
