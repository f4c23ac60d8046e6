"""A database outage under a running dispatcher and the health API: nothing lost, answers stay JSON."""

from __future__ import annotations

import contextlib
import time

import pytest

from core import db
from core.spool import default_spool
from dispatch.scheduler import Dispatcher
from health.models import ProbeResult, Service
from tests.conftest import requires_postgres
from tests.core.outage_support import unwritable

pytestmark = pytest.mark.usefixtures("fast_db_hardening")


def outage() -> contextlib.AbstractContextManager[None]:
    return unwritable("EXCLUSIVE")


@pytest.mark.slow("a real database outage, probed through and caught up")
@pytest.mark.django_db(transaction=True)
def test_it_keeps_probing_from_memory_during_an_outage_and_catches_up(tcp_server):
    service = Service.objects.create(
        name="web", kind="tcp", settings={"host": "127.0.0.1", "port": tcp_server.port}, interval=1
    )
    dispatcher = Dispatcher()  # rounds inline: each pass is done when it returns
    dispatcher.pass_once()  # learns the services while the database answers
    with outage():
        for _ in range(3):
            time.sleep(1.05)
            dispatcher.pass_once()
        assert dispatcher.outage_passes == 3
        assert default_spool().pending()
    db.reset_breaker()
    time.sleep(1.05)
    dispatcher.pass_once()  # the database is back: the spool is replayed before this pass's round is written
    times = list(ProbeResult.objects.filter(service=service).order_by("pk").values_list("checked_at", flat=True))
    assert len(times) == 5  # before, three during, after: none lost
    assert times == sorted(times)
    assert len(set(times)) == 5  # none twice
    assert not default_spool().pending()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_answers_live_200_and_status_503_json_while_the_database_is_down(client):
    Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 9})
    with outage():
        live = client.get("/health/live")
        status = client.get("/health/status")
        assert live.status_code == 200
        assert live.json()["status"] == "alive"
        assert status.status_code == 503
        assert status["Content-Type"].startswith("application/json")
        body = status.json()
        assert body["status"] == "down"
        assert body["database"]["status"] == "down"
        assert "circuitBreaker" in body["database"]
