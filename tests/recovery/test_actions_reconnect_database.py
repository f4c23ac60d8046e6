from __future__ import annotations

import pytest
from django.db import connection

from health.models import Service
from recovery.actions.reconnect_database import ReconnectDatabaseAction
from recovery.engine import recover_services
from recovery.models import RecoveryAction


@pytest.mark.django_db(transaction=True)
def test_it_closes_the_connections_and_answers_select_1():
    Service.objects.count()
    before = connection.connection
    result = ReconnectDatabaseAction({}, service=Service(name="db", kind="database"), timeout=5).run()
    assert result.ok is True and result.detail.endswith("SELECT 1 ok")
    assert result.detail.startswith("closed 1 connection(s)")
    if not (connection.vendor == "sqlite" and connection.is_in_memory_db()):
        # Django keeps an in-memory SQLite test database open on close(); anything else reconnects.
        assert connection.connection is not before


@pytest.mark.django_db(transaction=True)
def test_it_recovers_the_portals_own_database_service():
    svc = Service.objects.create(name="portal-db", kind="database", failure_threshold=1)
    RecoveryAction.objects.create(service=svc, kind="reconnect_database", verify_delay=0)
    (result,) = recover_services(["portal-db"], trigger="manual")
    assert result["outcome"] == "succeeded"
