"""The StatusPage admin: list, add a page with its services inline, and the validation it shares with the file."""

from __future__ import annotations

import pytest

from status.models import StatusPage
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db


def inline_form(**rows) -> dict:
    data = {
        "entries-TOTAL_FORMS": str(len(rows)),
        "entries-INITIAL_FORMS": "0",
        "entries-MIN_NUM_FORMS": "0",
        "entries-MAX_NUM_FORMS": "1000",
    }
    for i, (service_pk, display) in enumerate(rows.values()):
        data |= {
            f"entries-{i}-service": str(service_pk),
            f"entries-{i}-display_name": display,
            f"entries-{i}-position": str(i),
        }
    return data


def test_it_adds_a_page_with_its_services_and_links_to_it(admin_client):
    web = ServiceFactory(name="web")
    response = admin_client.post(
        "/admin/status/statuspage/add/",
        {"slug": "public", "title": "Example", "description": "", "hostname": "Status.Example.com", "public": "on"}
        | inline_form(a=(web.pk, "Website")),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    page = StatusPage.objects.get()
    assert page.hostname == "status.example.com" and page.public and not page.show_details
    assert [(e.service.name, e.display_name) for e in page.entries.all()] == [("web", "Website")]

    listing = admin_client.get("/admin/status/statuspage/").content.decode()
    assert 'href="/status/public/"' in listing


def test_it_refuses_a_hostname_with_a_port_as_the_file_does(admin_client):
    response = admin_client.post(
        "/admin/status/statuspage/add/",
        {"slug": "public", "title": "Example", "hostname": "status.example.com:8443"} | inline_form(),
    )
    assert response.status_code == 200
    assert "must be a host name" in response.content.decode()
    assert not StatusPage.objects.exists()


def test_it_needs_a_staff_login(client):
    assert client.get("/admin/status/statuspage/").status_code == 302
