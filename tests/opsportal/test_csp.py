"""Content-Security-Policy (django-csp): every dashboard page, the login page and the admin send a strict
policy, and the pages carry no inline script, event-handler attribute or style attribute it would block."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from health.models import Incident, Service

PASSWORD = "csp-test-password-4b1e"
DASHBOARD = [
    "/",
    "/live/overview/",
    "/incidents/",
    "/recovery/",
    "/services/api/",
    "/services/api/live/",
    "/services/api/recover/",
]
ADMIN = ["/admin/", "/admin/health/service/", "/admin/health/service/{pk}/change/"]


class InlineFinder(HTMLParser):
    """Collects what a strict CSP blocks: inline <script> bodies, on* handlers, style attributes, <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for name, _value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
            if name == "style":
                self.problems.append(f"<{tag} style=…>")
        if tag == "style":
            self.problems.append("<style> element")
        # JSON data blocks are not executed, so the policy does not apply to them.
        executable = (names.get("type") or "text/javascript") in ("text/javascript", "module", "application/javascript")
        self._in_script = tag == "script" and executable and not names.get("src")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append(f"inline <script>: {data.strip()[:60]!r}")


def inline_problems(html: str) -> list[str]:
    finder = InlineFinder()
    finder.feed(html)
    return finder.problems


def directives(header: str) -> dict[str, list[str]]:
    parts = [p.strip().split() for p in header.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


def assert_strict(response) -> None:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.wsgi_request.path}: no Content-Security-Policy header"
    policy = directives(header)
    assert policy["default-src"] == ["'self'"]
    for name in ("script-src", "style-src", "default-src"):
        assert "'unsafe-inline'" not in policy.get(name, []), f"{name} allows inline: {header}"
        assert "'unsafe-eval'" not in policy.get(name, []), header
    assert policy.get("object-src") == ["'none'"]
    assert policy.get("frame-ancestors") == ["'none'"]
    assert policy.get("base-uri") == ["'self'"]
    assert policy.get("form-action") == ["'self'"]


@pytest.fixture
def staff(db) -> Client:
    service = Service.objects.create(name="api", kind="http", settings={"url": "http://127.0.0.1:9/health"})
    Incident.objects.create(service=service, cause="api down")
    user = get_user_model().objects.create_superuser("root", "", PASSWORD)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", DASHBOARD)
def test_it_sends_a_strict_policy_and_no_inline_script_on_every_dashboard_page(staff, path):
    response = staff.get(path)
    assert response.status_code == 200, path
    assert_strict(response)
    assert inline_problems(response.content.decode()) == [], path


def test_it_sends_the_policy_on_the_login_page_and_it_has_no_inline_script(db):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert_strict(response)
    assert inline_problems(response.content.decode()) == []


def test_it_sends_the_policy_on_the_admin(staff):
    pk = Service.objects.get(name="api").pk
    for path in [p.format(pk=pk) for p in ADMIN]:
        response = staff.get(path)
        assert response.status_code == 200, path
        assert_strict(response)
        assert inline_problems(response.content.decode()) == [], path
    login = Client().get("/admin/login/")
    assert_strict(login)


def test_it_sends_the_policy_on_error_pages_too(staff):
    response = staff.get("/services/no-such-service/")
    assert response.status_code == 404
    assert_strict(response)


def test_it_finds_what_it_looks_for():
    # The checker itself: each kind of inline content is reported, external scripts and data blocks are not.
    html = (
        '<script>alert(1)</script><a onclick="x()">a</a><p style="color:red">p</p>'
        '<script src="/static/live.js"></script><script type="application/json">{"a": 1}</script>'
    )
    assert len(inline_problems(html)) == 3
