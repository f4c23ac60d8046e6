"""doctor's `status_hosts` check: a status page's hostname Django would refuse is named, with its fix."""

from __future__ import annotations

import pytest

from opsportal import doctor
from status.models import StatusPage


@pytest.mark.django_db
def test_it_names_a_status_page_whose_hostname_is_not_allowed(settings) -> None:
    settings.ALLOWED_HOSTS = ["ops.example.com", ".example.org"]
    StatusPage.objects.create(slug="plain", title="No host")
    StatusPage.objects.create(slug="sub", title="Allowed by a dot entry", hostname="status.example.org")
    assert doctor.check_status_hosts().ok

    StatusPage.objects.create(slug="public", title="Public", hostname="status.example.com")
    finding = doctor.check_status_hosts()

    assert not finding.ok
    assert "public (status.example.com)" in finding.detail
    assert "sub" not in finding.detail and "plain" not in finding.detail
    assert "ALLOWED_HOSTS" in finding.fix
