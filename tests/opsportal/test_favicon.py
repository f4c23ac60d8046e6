"""The favicon: /favicon.ico (asked for by browsers whatever a page links) leads to the icon, and every page
head (dashboard, login, admin, public status page) links it, so a browser never logs a 404 for it."""

from __future__ import annotations

import os
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from tests.dashboard.dashboard_fixtures import staff_client  # noqa: F401 - a fixture
from tests.factories import ServiceFactory
from tests.status.status_fixtures import make_page

ICON_LINK = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'


def test_it_ships_a_small_valid_svg():
    path = finders.find("favicon.svg")
    assert path, "static/favicon.svg is missing"
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")
    assert os.path.getsize(path) < 2048  # an icon, not a picture


@pytest.mark.django_db
def test_it_answers_favicon_ico_with_a_redirect_to_an_image(live_server):
    # live_server serves static files as the portal's own server does (no collectstatic needed).
    client = Client()
    answer = client.get("/favicon.ico")
    assert answer.status_code == 302
    assert answer["Location"] == "/static/favicon.svg"
    with urllib.request.urlopen(live_server.url + "/favicon.ico", timeout=10) as icon:  # follows the redirect
        assert icon.status == 200
        assert icon.headers["Content-Type"].startswith("image/svg+xml")
        assert icon.geturl().endswith("/static/favicon.svg")
        assert b"<svg" in icon.read()


@pytest.mark.django_db
def test_it_needs_no_login_for_the_icon():
    assert Client().get("/favicon.ico").status_code == 302  # not a redirect to the login page
    assert "login" not in Client().get("/favicon.ico")["Location"]


def test_it_links_the_icon_on_the_login_page(db):
    body = Client().get("/accounts/login/").content.decode()
    assert ICON_LINK in body


def test_it_links_the_icon_on_the_dashboard_and_the_admin(staff_client):  # noqa: F811 - a fixture
    assert ICON_LINK in staff_client.get("/").content.decode()
    staff_client.user.is_superuser = True
    staff_client.user.save()
    admin = staff_client.get("/admin/")
    assert admin.status_code == 200
    assert ICON_LINK in admin.content.decode()


@pytest.mark.django_db
def test_it_links_the_icon_on_a_public_status_page():
    make_page("public", [ServiceFactory(name="web")])
    answer = Client().get("/status/public/")
    assert answer.status_code == 200
    assert ICON_LINK in answer.content.decode()


@pytest.mark.django_db
def test_it_links_the_icon_on_the_not_found_page():
    answer = Client().get("/no-such-page/")
    assert answer.status_code == 404
    assert ICON_LINK in answer.content.decode()
