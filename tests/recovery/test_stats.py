from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health.models import Service
from recovery.models import RecoveryAttempt
from recovery.stats import recovery_stats, stats_payload


def attempt(service: Service, outcome: str, kind: str = "command", ms: float | None = None) -> RecoveryAttempt:
    return RecoveryAttempt.objects.create(
        service=service, trigger="auto", outcome=outcome, action_kind=kind, duration_ms=ms
    )


@pytest.mark.django_db
def test_it_counts_skips_separately_from_the_success_rate():
    web = Service.objects.create(name="web", kind="http", settings={"url": "http://127.0.0.1:9/"})
    worker = Service.objects.create(name="worker", kind="process", settings={"process_name": "w"})
    for _ in range(3):
        attempt(web, "succeeded", ms=1000)
    attempt(web, "failed")
    attempt(worker, "succeeded", "restart_process", ms=4000)
    attempt(worker, "abandoned", "restart_process")
    attempt(worker, "skipped_cooldown", "")
    attempt(worker, "skipped_busy", "")

    stats = recovery_stats()

    assert stats["total"] == 6 and stats["successful"] == 4 and stats["failed"] == 2 and stats["skipped"] == 2
    assert stats["successRate"] == "66.7%"
    assert stats["byService"] == {"web": 4, "worker": 2}
    assert stats["byAction"]["command"] == {"total": 4, "successful": 3, "failed": 1, "successRate": "75.0%"}
    assert stats["byAction"]["restart_process"]["failed"] == 1
    assert stats["meanTimeToRecoverMs"] == 1750.0
    assert stats["isRecovering"] is False
    assert stats["byOutcome"]["skipped_busy"] == 1


@pytest.mark.django_db
def test_it_shows_a_running_attempt_and_what_needs_recovery():
    web = Service.objects.create(name="web", kind="http", settings={"url": "http://127.0.0.1:9/"}, status="down")
    Service.objects.create(name="bare", kind="http", settings={"url": "http://127.0.0.1:9/"}, status="down")
    web.recovery_actions.create(kind="command", settings={"argv": ["true"]})
    attempt(web, "in_progress")

    payload = stats_payload()

    assert payload["stats"]["isRecovering"] is True
    assert payload["stats"]["total"] == 0 and payload["stats"]["successRate"] == "0.0%"
    assert payload["needsRecovery"] == {"needed": True, "services": ["web"]}
    assert payload["history"][0]["outcome"] == "in_progress" and payload["history"][0]["service"] == "web"


@pytest.mark.django_db
def test_it_pages_the_history_newest_first():
    web = Service.objects.create(name="web", kind="http", settings={"url": "http://127.0.0.1:9/"})
    now = timezone.now()
    for i in range(5):
        RecoveryAttempt.objects.create(
            service=web, trigger="manual", outcome="failed", started_at=now - timedelta(minutes=i), detail=str(i)
        )
    page = stats_payload(limit=2, offset=1)["history"]
    assert [h["detail"] for h in page] == ["1", "2"]
