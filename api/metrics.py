"""Prometheus metrics read from the database at scrape time.

A custom prometheus_client Collector rather than in-process counters: with several web workers each
process would count only its own share, while the database holds the one truth. The view serves
`cached_exposition()`: the database part from a short-lived per-process snapshot (api.snapshot),
the circuit breaker's gauges and the outage spool's (files of this host) live.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.base import STATUS_COLUMNS
from api.snapshot import Snapshot, cache_seconds, state_version
from core.db import breaker_status, close_connections, database_status
from core.spool import default_spool
from health.models import HEALTHY, Incident, Service, overall_status
from health.probes.base import DEGRADED, DOWN, UP
from recovery.models import RecoveryAttempt, RecoveryState
from recovery.stats import recovery_stats
from tunnels.models import Tunnel, TunnelEvent

log = logging.getLogger("opsportal.health.metrics")


class PortalCollector(Collector):
    """Services, overall status, incidents, recovery attempts and tunnel restarts; a constant number of queries."""

    def collect(self) -> Iterator[Metric]:
        yield from self.live()
        yield from self.database_families()[0]

    @classmethod
    def live(cls) -> Iterator[Metric]:
        """What is read per scrape, never from a snapshot: this process's breaker, this host's spool."""
        yield from cls._breaker()
        yield from cls._spool()

    @staticmethod
    def _spool() -> Iterator[Metric]:
        # Files on this host, known while the database is down: what waits in the outage spool, what it dropped.
        status = default_spool().status()
        size = GaugeMetricFamily("opsportal_spool_bytes", "Bytes waiting in the outage spool")
        size.add_metric([], status["bytes"])
        yield size
        records = GaugeMetricFamily("opsportal_spool_records", "Records waiting in the outage spool")
        records.add_metric([], status["records"])
        yield records
        dropped = CounterMetricFamily(
            "opsportal_spool_dropped", "Records dropped because the outage spool was full (this host)"
        )
        dropped.add_metric([], status["dropped"])
        yield dropped

    def database_families(self) -> tuple[list[Metric], bool]:
        """`opsportal_database_up` and everything read from the database; True when the reads succeeded."""
        db_up = GaugeMetricFamily("opsportal_database_up", "1 when the portal's own database answered this scrape")
        try:
            metrics = list(self._from_database())
        except DatabaseError as exc:
            log.warning("/metrics: database unavailable: %s", exc.__class__.__name__)
            db_up.add_metric([], 0)
            return [db_up], False
        db_up.add_metric([], 1)
        return [db_up, *metrics], True

    def _from_database(self) -> Iterator[Metric]:
        services = list(Service.objects.only(*STATUS_COLUMNS, "cert_expires_at"))
        now = timezone.now()
        labels = ["service", "kind", "critical"]
        up = GaugeMetricFamily(
            "opsportal_service_up", "1 when the service answers (up or degraded), else 0", labels=labels
        )
        status = GaugeMetricFamily(
            "opsportal_service_status", "1 for the service's current status", labels=["service", "status"]
        )
        latency = GaugeMetricFamily(
            "opsportal_service_latency_seconds", "Latency of the last probe", labels=["service"]
        )
        failures = GaugeMetricFamily(
            "opsportal_service_consecutive_failures", "Consecutive failed probes", labels=["service"]
        )
        cert = GaugeMetricFamily(
            "opsportal_cert_expiry_seconds",
            "Seconds until the certificate the last tls/https probe read expires (negative: expired)",
            labels=["service"],
        )
        for s in services:
            if s.cert_expires_at is not None:
                cert.add_metric([s.name], (s.cert_expires_at - now).total_seconds())
            up.add_metric([s.name, s.kind, str(s.critical).lower()], 1 if s.status in (UP, DEGRADED) else 0)
            status.add_metric([s.name, s.status], 1)
            if s.last_latency_ms is not None:
                latency.add_metric([s.name], s.last_latency_ms / 1000)
            failures.add_metric([s.name], s.consecutive_failures)
        yield from (up, status, latency, failures, cert)

        overall = GaugeMetricFamily("opsportal_status", "1 for the current overall status", labels=["status"])
        current = overall_status(services)
        for name in (HEALTHY, DEGRADED, DOWN):
            overall.add_metric([name], 1 if name == current else 0)
        yield overall

        incidents = GaugeMetricFamily("opsportal_incidents_open", "Open incidents")
        incidents.add_metric([], Incident.objects.filter(resolved_at__isnull=True).count())
        yield incidents

        yield from self._recovery()

        restarts = CounterMetricFamily(
            "opsportal_tunnel_restarts", "Tunnel restarts by the watchdog", labels=["tunnel"]
        )
        per_tunnel = Tunnel.objects.annotate(
            n=Count("events", filter=Q(events__kind=TunnelEvent.Kind.RESTARTED))
        ).values_list("name", "n")
        for name, n in per_tunnel:
            restarts.add_metric([name], n)
        yield restarts

    @staticmethod
    def _breaker() -> Iterator[Metric]:
        # This process's breaker, known even when the database is not: each web worker reports its own.
        status = breaker_status()
        state = GaugeMetricFamily(
            "opsportal_database_circuit_breaker_state", "1 for the breaker's current state", labels=["state"]
        )
        for name in ("closed", "open", "half-open"):
            state.add_metric([name], 1 if status["state"] == name else 0)
        yield state
        failures = GaugeMetricFamily(
            "opsportal_database_circuit_breaker_failures", "Consecutive failures counted by the breaker"
        )
        failures.add_metric([], status["consecutiveFailures"])
        yield failures

    def _recovery(self) -> Iterator[Metric]:
        # The same numbers as /health/recovery-stats: one source for both.
        stats = recovery_stats()
        attempts = CounterMetricFamily(
            "opsportal_recovery_attempts", "Recovery attempts by outcome", labels=["outcome"]
        )
        for outcome in RecoveryAttempt.Outcome.values:
            attempts.add_metric([outcome], stats["byOutcome"].get(outcome, 0))
        yield attempts
        by_action = CounterMetricFamily(
            "opsportal_recovery_action_attempts",
            "Recovery attempts that ran, by action kind and result",
            labels=["action", "result"],
        )
        for action, row in stats["byAction"].items():
            by_action.add_metric([action, "succeeded"], row["successful"])
            by_action.add_metric([action, "failed"], row["failed"])
        yield by_action
        in_progress = GaugeMetricFamily("opsportal_recovery_in_progress", "1 while any recovery attempt runs")
        in_progress.add_metric([], 1 if stats["isRecovering"] else 0)
        yield in_progress
        mttr = GaugeMetricFamily(
            "opsportal_recovery_mean_time_to_recover_seconds", "Mean duration of a successful recovery attempt"
        )
        if stats["meanTimeToRecoverMs"] is not None:
            mttr.add_metric([], stats["meanTimeToRecoverMs"] / 1000)
        yield mttr
        escalated = GaugeMetricFamily(
            "opsportal_recovery_escalated",
            "1 for a service whose auto-recovery is stopped by escalation",
            labels=["service"],
        )
        for name in RecoveryState.objects.filter(escalated_at__isnull=False).values_list("service__name", flat=True):
            escalated.add_metric([name], 1)
        yield escalated


class _Families(Collector):
    """Families built beforehand, so a part of the exposition can be rendered on its own."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _render(collector: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def exposition() -> bytes:
    """The Prometheus text exposition of the portal's state, as of now."""
    return _render(PortalCollector())


def _database_part() -> tuple[bytes, bool]:
    families, ok = PortalCollector().database_families()
    return _render(_Families(families)), ok


# The text format is the concatenation of its families, so the kept database part and the live breaker
# part join into the very bytes exposition() would make. Kept only when the reads succeeded.
database_snapshot: Snapshot[tuple[bytes, bool]] = Snapshot(
    _database_part,
    cache_seconds,
    cacheable=lambda part: part[1],
    cleanup=close_connections,  # the refresh thread's own connection
    name="metrics",
)


def cached_exposition() -> bytes:
    """exposition(), its database part from `database_snapshot` at the current state version
    (api.snapshot.state_version; STATUS_CACHE_SECONDS), the breaker and the spool live.

    The database is checked per scrape, as /health/status does: when it is down the answer is exposition()
    as today (`opsportal_database_up 0`), never a kept part that says it is up.
    """
    if cache_seconds() <= 0 or database_status()["status"] == "down":
        return exposition()
    try:
        version = state_version()  # before the snapshot: a change committed since shows in this scrape
    except DatabaseError as exc:
        log.warning("/metrics: state version unreadable: %s", exc.__class__.__name__)
        return exposition()
    body, _ = database_snapshot.get(version)
    return _render(_Families(list(PortalCollector.live()))) + body
