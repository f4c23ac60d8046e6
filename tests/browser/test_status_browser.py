"""A status page in a real headless Chromium, logged out, at 1280 and 390 px: the state words are visible, nothing
overflows sideways on a phone, the policy reports no violation, and dark mode changes the colours."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from health.models import HourlyRollup, MaintenanceWindow
from tests.browser.conftest import screenshot
from tests.factories import ServiceFactory
from tests.status.status_fixtures import down_service, make_page, open_incident

pytestmark = pytest.mark.browser


@pytest.fixture
def status_page(transactional_db, settings):
    from django.core.cache import cache

    settings.STATUS_PAGE_CACHE_SECONDS = 0
    cache.clear()
    now = timezone.now()
    web = ServiceFactory(name="web", status="up")
    db = down_service("db-primary-with-a-rather-long-internal-name")
    cdn = ServiceFactory(name="cdn", status="up", in_maintenance=True)
    make_page(
        "public",
        [web, db, cdn],
        display={"db-primary-with-a-rather-long-internal-name": "Customer database (EU region)"},
        title="Example Corporation status",
        description="Live state of the services our customers use.",
    )
    start = (now - dt.timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
    HourlyRollup.objects.bulk_create(
        HourlyRollup(
            service=s, hour=start + dt.timedelta(hours=h), count=60, up=60 if h % 50 else 40, down=0 if h % 50 else 20
        )
        for s in (web, db)
        for h in range(24 * 29)
    )
    open_incident(
        db,
        updates=[
            ("investigating", "Some customers cannot log in. We are investigating.", True),
            ("identified", "A storage node failed; we are moving traffic to a replica.", True),
        ],
    )
    MaintenanceWindow.objects.create(
        name="cdn-swap", service=cdn, starts_at=now - dt.timedelta(minutes=10), ends_at=now + dt.timedelta(hours=1)
    )


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)])
def test_it_shows_the_page_logged_out_at_desktop_and_phone_width(chromium, live_server, status_page, width, height):
    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        response = page.goto(live_server.url + "/status/public/")
        assert response.status == 200
        assert page.url == live_server.url + "/status/public/"  # no login on the way
        for words in ("Major outage", "Operational", "Under maintenance", "Customer database (EU region)"):
            assert page.get_by_text(words, exact=True).first.is_visible(), words
        assert page.get_by_text("A storage node failed", exact=False).is_visible()
        assert page.locator("svg.daybar").count() == 3
        bar_width = page.locator("svg.daybar").first.bounding_box()["width"]
        assert bar_width > width * 0.6  # the bar spans the card at either width
        assert no_horizontal_overflow(page), "the page scrolls sideways"
        assert page.locator("script").count() == 0
        screenshot(page, f"status-page-{width}.png")
        assert violations == []
    finally:
        context.close()


def test_it_follows_the_dark_colour_scheme(chromium, live_server, status_page):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(live_server.url + "/status/public/")
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 19, 24)"  # --bg of opsportal.css's dark palette
        assert no_horizontal_overflow(page)
        screenshot(page, "status-page-390-dark.png")
    finally:
        context.close()
