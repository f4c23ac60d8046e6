"""Recovery log lines name an attempt by the service's own count ("attempt 2 of web"), with the row id beside
it (#8 is a row over every service, and read as a count it was wrong): real attempts, real log records."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from recovery.engine import abandon_stale, recover_services
from recovery.models import RecoveryAttempt
from tests.recovery.conftest import PY

Outcome = RecoveryAttempt.Outcome
NOT_FIXED = [PY, "-c", "print('restarted')"]  # exits 0; the target stays broken


@pytest.fixture
def recovery_log(caplog) -> Iterator[pytest.LogCaptureFixture]:
    """The `opsportal` logger does not propagate: pytest's capture handler hangs on it directly."""
    logger = logging.getLogger("opsportal")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


def lines(caplog, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "opsportal.recovery" and start in r.getMessage()]


@pytest.mark.django_db
def test_it_counts_the_attempts_of_the_service_not_the_rows_of_all(flag_target, make_service, add_action, recovery_log):
    server, _ = flag_target
    api = make_service("api", url=server.url + "/api")
    web = make_service("web", url=server.url + "/web")
    add_action(api, "command", {"argv": NOT_FIXED}, cooldown=60)
    add_action(web, "command", {"argv": NOT_FIXED}, cooldown=60)
    recover_services(["api"], trigger="manual")  # another service's row first: web's rows start above it
    (first,) = recover_services(["web"], trigger="manual")
    (skipped,) = recover_services(["web"], trigger="manual")  # in cooldown: a skip is a row, not an attempt
    (second,) = recover_services(["web"], trigger="manual", force=True)
    assert (first["outcome"], skipped["outcome"], second["outcome"]) == ("failed", "skipped_cooldown", "failed")
    assert first["attempt"] < skipped["attempt"] < second["attempt"]

    started = lines(recovery_log, "Recovery of web started")
    assert started == [
        f"🔄 Recovery of web started: command (trigger manual, attempt 1 of web (#{first['attempt']}))",
        f"🔄 Recovery of web started: command (trigger manual, attempt 2 of web (#{second['attempt']}))",
    ]
    ended = lines(recovery_log, "Recovery of web failed")
    assert len(ended) == 2
    assert re.search(rf"\(attempt 1 of web \(#{first['attempt']}\), 1 failed in a row\)$", ended[0]), ended[0]
    assert re.search(rf"\(attempt 2 of web \(#{second['attempt']}\), 2 failed in a row\)$", ended[1]), ended[1]
    assert lines(recovery_log, "attempt 1 of api (#")  # api counts its own


@pytest.mark.django_db
def test_it_names_an_abandoned_attempt_the_same_way(make_service, recovery_log, settings):
    web = make_service("web")
    long_ago = timezone.now() - timedelta(seconds=settings.RECOVERY_STALE_AFTER + 60)
    done = RecoveryAttempt.objects.create(service=web, trigger="auto", outcome=Outcome.FAILED, started_at=long_ago)
    RecoveryAttempt.objects.create(service=web, trigger="auto", outcome=Outcome.SKIPPED_COOLDOWN, started_at=long_ago)
    stale = RecoveryAttempt.objects.create(service=web, trigger="auto", started_at=long_ago)  # no owner, in progress
    assert abandon_stale() == 1
    (line,) = lines(recovery_log, "abandoned")
    assert line.startswith(f"⚠️ Recovery of web abandoned (attempt 2 of web (#{stale.pk}), started ")
    assert f"#{done.pk}" not in line
