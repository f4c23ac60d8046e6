"""Real headless Chromium (Debian's package) driven by Playwright, against pytest-django's live_server.

Never downloads a browser: launches /usr/bin/chromium, and skips with a reason when it is missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-test-password-7f3a"


@pytest.fixture(scope="package")
def chromium(live_server) -> Iterator:
    """One browser for this package. Package scope, after live_server: it closes (and with it its
    keep-alive connections to the live server) before the session's live server stops, and
    Playwright's event loop is gone before any other package's tests run."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around it
    # are ordinary synchronous ones. Only while the browser runs: never leaked into other tests.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, live_server) -> Iterator:
    """A page whose test fails if the browser refused anything by the Content-Security-Policy."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.base = live_server.url
    page.csp_violations = []
    page.on("console", lambda message: record_csp_violation(page, message))
    yield page
    context.close()
    assert page.csp_violations == [], "the browser reported Content-Security-Policy violations"


def record_csp_violation(page, message) -> None:
    # Chromium reports each blocked script, style or request as a console error naming the policy.
    if message.type == "error" and "Content Security Policy" in message.text:
        page.csp_violations.append(message.text)


@pytest.fixture
def staff_user(transactional_db):
    """An operator: staff, with the permissions of the dashboard's actions (health.permissions)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from health.permissions import ACTIONS

    user = get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    for name in ACTIONS:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def wait_until(page, expression: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript expression until it is truthy. Not page.wait_for_function: that evaluates its
    string in the page, which the Content-Security-Policy (no 'unsafe-eval') refuses; page.evaluate goes
    through the DevTools protocol, which the policy does not govern."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


def after_background_recovery(page, service: str, timeout: float = 30.0) -> None:
    """After Confirm: the "started" message (when the landing page rendered), then the recovery's verified
    outcome in the page's live region once its attempt has finished.

    The suite's SQLite test database lives in memory with a shared cache, whose table locks can fail the
    landing page's one read while the recovery thread writes (a file database in WAL mode, as deployed, and
    PostgreSQL never do); the message itself is asserted in tests/dashboard/test_recover_background.py."""
    from recovery.models import RecoveryAttempt

    page.wait_for_url(page.base + f"/services/{service}/")
    if page.locator(".messages").count():
        assert f"Recovery of {service} started" in page.locator(".messages").inner_text()
    deadline = time.monotonic() + timeout
    running = RecoveryAttempt.objects.filter(service__name=service, trigger="manual", outcome="in_progress")
    while running.exists() or not RecoveryAttempt.objects.filter(service__name=service, trigger="manual").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the manual recovery of {service} did not finish within {timeout} s")
        page.wait_for_timeout(200)
    page.reload()
    wait_until(page, "document.querySelector('#live .recovery-last')")
    assert "verified healthy" in page.locator("#live .recovery-last").inner_text()


def login(page, user) -> None:
    page.goto(page.base + "/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(page.base + "/")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
