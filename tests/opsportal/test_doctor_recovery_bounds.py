"""doctor's `recovery` check: every action ends within RECOVERY_STALE_AFTER (issue 15 item 4)."""

from __future__ import annotations

import pytest

from health.models import Service
from opsportal import doctor
from recovery.models import RecoveryAction


@pytest.mark.django_db
def test_it_names_an_action_longer_than_the_stale_bound(settings) -> None:
    settings.RECOVERY_STALE_AFTER = 900
    svc = Service.objects.create(name="web", kind="http", settings={"url": "http://127.0.0.1:9/"})
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]}, timeout=60, position=0)
    assert doctor.check_recovery_bounds().ok

    # Saved while the bound was larger; the bound was lowered since.
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]}, timeout=600, position=1)
    settings.RECOVERY_STALE_AFTER = 300
    finding = doctor.check_recovery_bounds()

    assert not finding.ok
    assert "web recovery[1]" in finding.detail and "605 s" in finding.detail  # timeout + the default verify_delay
    assert "recovery[0]" not in finding.detail
    assert "RECOVERY_STALE_AFTER" in finding.fix
