"""`manage.py pruneresults [--dry-run]`: roll up, then prune; a dry run changes nothing."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from health.models import HourlyRollup, ProbeResult
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_and_new(settings):
    settings.RAW_RETENTION_DAYS = 7
    service = ServiceFactory(name="web")
    now = timezone.now()
    for days in (10, 9, 9, 1):
        ProbeResult.objects.create(service=service, checked_at=now - dt.timedelta(days=days), status="up", latency_ms=5)
    return service


def run(*args: str) -> str:
    out = StringIO()
    call_command("pruneresults", *args, stdout=out)
    return out.getvalue().strip()


def test_it_changes_nothing_on_a_dry_run(old_and_new):
    before = list(ProbeResult.objects.order_by("pk").values_list("pk", flat=True))
    summary = run("--dry-run")
    assert summary.startswith("pruneresults (would): ")
    assert "3 probe results deleted" in summary
    # Two old hours before they are pruned, and the recent (kept) hour that has already ended.
    assert "3 hourly rollups written" in summary
    assert list(ProbeResult.objects.order_by("pk").values_list("pk", flat=True)) == before
    assert not HourlyRollup.objects.exists()


def test_it_rolls_up_then_prunes_and_is_idempotent(old_and_new):
    summary = run("--batch", "2")
    assert summary == (
        "pruneresults (did): 3 hourly rollups written, 3 probe results deleted, 0 old rollups deleted, in 2 batches"
    )
    assert ProbeResult.objects.count() == 1  # the recent raw row is kept beside its hour's rollup
    assert sorted(HourlyRollup.objects.values_list("count", flat=True)) == [1, 1, 2]
    assert "0 hourly rollups written, 0 probe results deleted" in run()
    assert HourlyRollup.objects.count() == 3


def test_it_refuses_a_batch_below_one(old_and_new):
    with pytest.raises(CommandError, match="--batch must be a positive integer"):
        run("--batch", "0")
    assert ProbeResult.objects.count() == 4
