"""Manual recovery in the background: the dashboard's Confirm answers at once, the attempt runs elsewhere.

`start` checks what the engine would refuse at once (no action, paused, misconfigured, a recovery already
running, cooldown, escalation), records that refusal as the engine would (a `skipped_*` attempt) and starts
nothing; otherwise it hands `run_manual` to Django-Q2 when a cluster is alive, else to a daemon thread of this
process. The engine still claims the service's slot, so two presses that pass the check together still run one
attempt (the other is recorded `skipped_busy`). `progress` is what the service page's live refresh shows.

POST /health/recover stays synchronous (docs/api.md): it calls recovery.engine directly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from dispatch.scheduler import resident_loops
from health.models import Service
from recovery import policy
from recovery.engine import abandon_stale, recover_services
from recovery.models import RecoveryAttempt, RecoveryState

log = logging.getLogger("opsportal.recovery")
Outcome = RecoveryAttempt.Outcome
VIA = "dashboard"
TASK = "dispatch.manual.run_manual"
# Beyond the action and the re-probe: the claim, the rows, the events.
TASK_MARGIN_S = 30


@dataclass(frozen=True)
class Started:
    """What Confirm came to: started (in the cluster or a thread), or refused with the engine's reason."""

    started: bool
    where: str = ""  # "cluster" | "thread"
    outcome: str = ""  # the skip's outcome when refused
    reason: str = ""

    @property
    def busy(self) -> bool:
        return self.outcome == Outcome.SKIPPED_BUSY


@dataclass(frozen=True)
class Progress:
    """The service page's recovery line: running since …, or the latest attempt that ran (skips left out)."""

    running_since: datetime | None
    running: RecoveryAttempt | None
    last: RecoveryAttempt | None

    @property
    def since(self) -> datetime | None:
        """When the running recovery began: the claim's time, else its attempt's (either may come first)."""
        return self.running_since or (self.running.started_at if self.running is not None else None)


def refusal(service: Service, *, force: bool) -> tuple[str, str]:
    """(outcome, reason) the engine would skip with right now, or ("", "") when it would run an action.
    Runs the engine's own steps before a claim that can free it (a dead owner's claim taken over, an
    acknowledged escalation lifted, health noted), so a zombie claim never reads as "already running"."""
    if service.is_paused:
        return Outcome.SKIPPED_DISABLED, "the service is disabled or paused"
    if reason := policy.misconfigured_reason(service):
        return Outcome.SKIPPED_DISABLED, reason
    if not policy.eligible_actions(service, auto=False):
        return Outcome.SKIPPED_DISABLED, "no recovery action configured"
    abandon_stale()
    now = timezone.now()
    policy.note_health([service], now)
    state = RecoveryState.for_service(service)
    policy.lift_if_acknowledged(state)
    if RecoveryState.objects.filter(pk=state.pk).filter(policy.claim_filter(now, force=force)).exists():
        return "", ""
    state.refresh_from_db()
    return policy.skip_reason(state, now, force=force)


def start(service: Service, user: Any, *, force: bool) -> Started:
    """Start a manual recovery of `service` in the background, or record why not (never waits for it)."""
    outcome, reason = refusal(service, force=force)
    if outcome:
        _record_skip(service, user, outcome, reason)
        return Started(False, outcome=outcome, reason=reason)
    user_id = getattr(user, "pk", None)
    if cluster_alive():
        from django_q.tasks import async_task  # here: importing django_q needs the app registry ready

        async_task(
            TASK, service.name, user_id, force, task_name=f"recover-{service.name}"[:100], timeout=task_timeout(service)
        )
        return Started(True, where="cluster")
    thread = threading.Thread(
        target=_in_thread, args=(service.name, user_id, force), name=f"recover-{service.name}", daemon=True
    )
    transaction.on_commit(thread.start)  # at once outside a transaction; else once what it reads is committed
    return Started(True, where="thread")


def task_timeout(service: Service) -> int:
    """The cluster's task timeout, or longer when the slowest action and its verification need it (a worker
    killed mid-attempt leaves it to the takeover: recovery.owner)."""
    actions = policy.eligible_actions(service, auto=False)
    needed = max((a.timeout + a.verify_delay for a in actions), default=0.0) + service.timeout + TASK_MARGIN_S
    return max(int(settings.Q_CLUSTER["timeout"]), int(needed) + 1)


def cluster_alive() -> bool:
    """A Django-Q2 cluster to run the task: a resident loop beats (dispatch's qcluster), or a cluster's own
    statistics are fresh in the broker's cache (DISPATCH_RESIDENT=false)."""
    if resident_loops() > 0:
        return True
    try:
        from django_q.status import Stat

        return bool(Stat.get_all())
    except Exception as exc:  # a cache that does not answer: no cluster we can count on
        log.warning("Manual recovery: could not read the Django-Q2 cluster statistics (%s)", type(exc).__name__)
        return False


def run_manual(name: str, user_id: int | None, force: bool) -> str:
    """The Django-Q2 task (and the thread's body): one manual recovery through the engine."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    results = recover_services([name], trigger="manual", user=user, via=VIA, force=force)
    if not results:
        return f"{name}: nothing attempted"
    r = results[0]
    return f"{name}: {r.outcome}" + (f" ({r.reason or r.detail})" if r.reason or r.detail else "")


def _in_thread(name: str, user_id: int | None, force: bool) -> None:
    try:
        log.info("Manual recovery of %s: %s", name, run_manual(name, user_id, force))
    except Exception as exc:  # the engine records a crash as a failed attempt; the thread must not die loudly
        log.error("Manual recovery of %s crashed: %s", name, type(exc).__name__)
    finally:
        connections.close_all()  # this thread's own connections only


def _record_skip(service: Service, user: Any, outcome: str, reason: str) -> None:
    """The refusal recorded as the engine records its skips, so the history shows every press."""
    now = timezone.now()
    RecoveryAttempt(
        service=service,
        trigger=RecoveryAttempt.Trigger.MANUAL,
        outcome=outcome,
        started_at=now,
        finished_at=now,
        duration_ms=0.0,
        detail=reason[:500],
        requested_by=user if getattr(user, "pk", None) else None,
        requested_via=VIA,
    ).store()
    log.info("⏭️ Recovery of %s skipped (%s, trigger manual): %s", service.name, outcome, reason)


def progress(service: Service) -> Progress:
    """One query: the latest attempt that ran or runs (skips left out), with the claim's `running_since`."""
    claim = RecoveryState.objects.filter(service=OuterRef("service")).values("running_since")[:1]
    latest = (
        RecoveryAttempt.objects.filter(service=service)
        .exclude(outcome__startswith="skipped_")
        .select_related("requested_by")
        .annotate(claimed_since=Subquery(claim))
        .order_by("-started_at", "-pk")
        .first()
    )
    if latest is None:  # no attempt ever ran: a claim then is an instant old (its row is being written)
        return Progress(running_since=None, running=None, last=None)
    running = latest if latest.outcome == Outcome.IN_PROGRESS else None
    return Progress(running_since=latest.claimed_since, running=running, last=None if running else latest)
