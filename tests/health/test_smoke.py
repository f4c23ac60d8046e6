from __future__ import annotations

import pytest
from django.core.management import call_command

from health.models import Service


@pytest.mark.django_db
def test_it_imports_the_demo_config_and_probes_the_database(settings):
    settings.AUTO_RECOVERY_ENABLED = False
    call_command("importconfig", "examples/demo.toml")
    assert Service.objects.filter(name="portal-db", kind="database").exists()
    with pytest.raises(SystemExit):
        call_command("runprobes", "portal-db")
    db = Service.objects.get(name="portal-db")
    assert db.status == "up"
    assert db.results.count() == 1
