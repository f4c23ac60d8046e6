"""The Django-Q2 task functions the schedules name (called as qcluster calls them)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from core import db
from core.models import SchedulerHeartbeat
from dispatch import tasks
from dispatch.scheduler import ensure_schedules
from health.models import ProbeResult, Service


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.AUTO_RECOVERY_ENABLED = False
    yield
    db.STOP.clear()


@pytest.mark.django_db
def test_it_names_task_functions_that_exist():
    from django.utils.module_loading import import_string

    ensure_schedules()
    for schedule in Schedule.objects.filter(name__startswith="opsportal-"):
        assert callable(import_string(schedule.func))


@pytest.mark.django_db
def test_it_prunes_results_older_than_the_retention(settings):
    settings.RAW_RETENTION_DAYS = 30
    service = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 9})
    now = timezone.now()
    ProbeResult.objects.create(service=service, status="up", checked_at=now - timedelta(days=31))
    ProbeResult.objects.create(service=service, status="up", checked_at=now - timedelta(days=29))
    assert "1 probe results deleted" in tasks.prune()
    assert ProbeResult.objects.count() == 1


@pytest.mark.slow("runs the dispatcher loop for its configured seconds")
@pytest.mark.django_db(transaction=True)
def test_it_dispatches_for_the_configured_loop_and_returns_a_summary(settings, tcp_server):
    settings.DISPATCH_LOOP_SECONDS = 2
    settings.DISPATCH_TICK_MS = 200
    service = Service.objects.create(
        name="web", kind="tcp", settings={"host": "127.0.0.1", "port": tcp_server.port}, interval=1
    )
    summary = tasks.dispatch()
    assert summary.startswith("dispatcher done: ")
    assert 2 <= service.results.count() <= 3  # at 0 s, 1 s (and perhaps 2 s): once a second, no more
    assert SchedulerHeartbeat.objects.filter(name="dispatcher").exists()
