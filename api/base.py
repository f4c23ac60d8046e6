"""The JSON health API's building blocks: the one error helper, body and query parsing, and the payloads.

Views stay thin: they authenticate (api.auth), parse with the helpers here, and return what the
payload functions build. Every error any endpoint answers comes from `error()`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from core import version
from core.db import database_status
from core.spec import SLUG
from core.spool import default_spool
from dispatch.scheduler import apply_scheduler_status, scheduler_status
from health.models import HEALTHY, PAUSED, UNKNOWN, Incident, Service, overall_status
from health.pings import ping_urls
from health.probes.base import DEGRADED, DOWN, UP
from health.rollups import UPTIME_WINDOWS, uptime_tallies
from recovery.engine import RecoveryNotAvailable, recover_services
from recovery.stats import recovery_stats
from tunnels.status import tunnels_status

log = logging.getLogger("opsportal.health.api")

# Largest request body the API reads; anything bigger is refused with 413 before it is parsed.
MAX_BODY_BYTES = 64 * 1024
HEALTH_JSON = "application/health+json"
# Process start, taken once: /health/live reports uptime without touching anything else.
_STARTED_AT = psutil.Process(os.getpid()).create_time()


class ApiError(Exception):
    """A client error with its HTTP status; views turn it into `error(message, status)`."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, content_type: str = "application/json") -> JsonResponse:
    response = JsonResponse(data, status=status, encoder=DjangoJSONEncoder, safe=False)
    response["Content-Type"] = content_type
    response["Cache-Control"] = "no-store"
    return response


def error(message: str, status: int, headers: dict[str, str] | None = None) -> JsonResponse:
    """The one JSON error answer: `{"error": "..."}`."""
    response = json_response({"error": message}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def api_view(*methods: str) -> Callable:
    """Allow these methods (GET implies HEAD), answer 405 otherwise, and turn any failure into JSON.

    An ApiError becomes its status; a database failure a 503; anything else a logged 500 — never an
    HTML page or a traceback.

    CSRF-exempt, so the method check (405 with Allow) answers before Django's HTML CSRF page: api.auth
    enforces CSRF itself for session-authenticated unsafe requests (a bearer token has no cookie to forge).
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
    allow_header = ", ".join(sorted(allowed))

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                return error(f"method {request.method} not allowed; use {allow_header}", 405, {"Allow": allow_header})
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.message, exc.status, exc.headers)
            except DatabaseError:
                log.exception("database error in %s", request.path)
                return error("the portal's database is unavailable", 503)
            except Exception:
                log.exception("unhandled error in %s", request.path)
                return error("internal server error", 500)

        return csrf_exempt(wrapper)

    return decorator


# --- request parsing ---------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One key of a JSON body: its check, and what the error says when the check fails."""

    check: Callable[[Any], bool]
    expected: str


def _service_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and SLUG.fullmatch(v) for v in value)


SERVICES_FIELD = Field(_service_names, "a list of service names")
BOOL_FIELD = Field(lambda v: isinstance(v, bool), "true or false")


def read_body(request: HttpRequest, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (413) one larger than `limit` before reading it when its length is declared.

    A body framed by Transfer-Encoding (chunked, no Content-Length) is a 411: Django reads such a body as
    empty, and an empty recover body means "every service that needs it", never what was sent.
    """
    if request.META.get("HTTP_TRANSFER_ENCODING"):
        # Transfer-Encoding frames the body whatever Content-Length says (RFC 9112 6.3).
        raise ApiError(
            "request body without Content-Length (chunked transfer encoding) cannot be read; "
            "send it with a Content-Length",
            411,
        )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError("Content-Length must be an integer") from None
    if declared > limit:
        raise ApiError(f"request body too large: at most {limit} bytes", 413)
    body = request.body
    if len(body) > limit:
        raise ApiError(f"request body too large: at most {limit} bytes", 413)
    return body


def parse_object(request: HttpRequest, fields: dict[str, Field]) -> dict[str, Any]:
    """An optional JSON object body with only `fields`, each of the right type; an empty body is `{}`."""
    body = read_body(request)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ApiError("request body must be JSON") from None
    except RecursionError:  # `[` × 5000 fits the size cap; the decoder's own depth bound is the limit
        raise ApiError("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError("request body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ApiError(f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(fields))}")
    for key, value in data.items():
        if not fields[key].check(value):
            raise ApiError(f"{key!r} must be {fields[key].expected}")
    return data


def int_param(request: HttpRequest, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"{name!r} must be an integer from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise ApiError(f"{name!r} must be an integer from {minimum} to {maximum}")
    return value


def choice_param(request: HttpRequest, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ApiError(f"{name!r} must be one of {', '.join(choices)}")
    return raw


def name_param(request: HttpRequest, name: str) -> str | None:
    """A service name from the query string; absent is None, anything else that cannot be one (empty
    included, as the OpenAPI pattern says) is a 400, never a query."""
    raw = request.GET.get(name)
    if raw is None:
        return None
    if not SLUG.fullmatch(raw):
        raise ApiError(f"{name!r} must be a service name (lowercase letters, digits, '-' or '_')")
    return raw


def existing_services(names: list[str]) -> list[str]:
    """The names, deduplicated in order; 404 naming the first one that is not a service (so nothing runs)."""
    try:
        return [s.name for s in Service.objects.only("name").named(names)]
    except Service.DoesNotExist as exc:
        raise ApiError(f"unknown service {exc.missing[0]!r}", 404) from None


# --- payloads --------------------------------------------------------------------


def build_info() -> dict[str, Any]:
    """Version, commit and build time (core.version)."""
    return dict(version.build_info())


def live_payload() -> dict[str, Any]:
    """Process liveness: no database, no cache, nothing that can hang."""
    info = build_info()
    payload = {"status": "alive", "pid": os.getpid(), "uptime": int(time.time() - _STARTED_AT)}
    payload["version"] = info.get("version", version.version())
    payload.update({k: v for k, v in info.items() if k != "version"})
    return payload


# What status_dict() and overall_status() read: loading only these halves the cost at 1,000 services
# (the skipped columns are mostly timestamps, each parsed per row). A field missing here would cost a
# query per service, which the constant-query-count tests catch.
STATUS_COLUMNS = (
    "name",
    "kind",
    "status",
    "state_type",
    "critical",
    "enabled",
    "paused",
    "in_maintenance",
    "last_latency_ms",
    "last_checked_at",
    "consecutive_failures",
    "last_detail",
    "flapping",
    "tags",
)

_migrations_applied = False


def migrations_pending() -> list[str]:
    """Unapplied migrations; once none are pending the answer is kept (a new deploy restarts the process)."""
    global _migrations_applied
    if _migrations_applied:
        return []
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    pending = [f"{m.app_label}.{m.name}" for m, _ in plan]
    _migrations_applied = not pending
    return pending


def ready_payload() -> tuple[dict[str, Any], int]:

    db = database_status()
    if db["status"] != "up":
        return {"status": "not_ready", "reason": "the database does not answer", "database": db}, 503
    try:
        pending = migrations_pending()
    except DatabaseError:
        return {"status": "not_ready", "reason": "the database does not answer", "database": db}, 503
    if pending:
        reason = f"{len(pending)} migration(s) not applied, first {pending[0]}"
        return {"status": "not_ready", "reason": reason, "database": db}, 503
    return {"status": "ready", "database": db}, 200


def _guarded(read: Callable[[], Any], fallback: Any, failures: list[str], what: str) -> Any:
    """Run one database read of the status page; on a database error note it and use the fallback."""
    try:
        return read()
    except DatabaseError as exc:
        log.warning("/health/status: %s unavailable: %s", what, exc.__class__.__name__)
        failures.append(what)
        return fallback


def with_spool(database: dict[str, Any]) -> dict[str, Any]:
    """The database section with the outage spool's state (files on this host: known while the database is
    down, and read per request, never from a snapshot)."""
    return {**database, "spool": default_spool().status()}


def with_ping_urls(payload: dict[str, Any]) -> dict[str, Any]:
    """/health/status for staff: each push service carries its `pingUrl` (health.pings)."""
    urls = ping_urls()
    services = {
        name: ({**row, "pingUrl": urls[name]} if name in urls else row) for name, row in payload["services"].items()
    }
    return {**payload, "services": services}


def status_payload(database: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of GET /health/status, in a constant number of queries; what cannot be read is reported as such.

    `database` is a `database_status()` the caller has just taken (api.snapshot): not checked twice."""
    failures: list[str] = []
    database = database_status() if database is None else database
    unknown_scheduler = {"status": "unknown", "lastRunAt": None, "lagSeconds": None}
    if database["status"] == "down":
        # Report what is known without waiting on a database that just failed (or whose breaker is open).
        services, tunnels, open_incidents, recovery, scheduler = None, {}, None, None, unknown_scheduler
        failures = ["services", "tunnels", "incidents", "recovery", "scheduler"]
    else:
        services = _guarded(lambda: list(Service.objects.only(*STATUS_COLUMNS)), None, failures, "services")
        tunnels = _guarded(tunnels_status, {}, failures, "tunnels")
        open_incidents = _guarded(
            lambda: Incident.objects.filter(resolved_at__isnull=True).count(), None, failures, "incidents"
        )
        recovery = _guarded(recovery_stats, None, failures, "recovery")
        scheduler = _guarded(scheduler_status, unknown_scheduler, failures, "scheduler")
    if services is None:
        # The services cannot be read: the portal cannot vouch for anything.
        overall = DOWN
        database = {**database, "status": "down"}
    else:
        # A late scheduler makes `healthy` at least `degraded`: the states shown may be stale.
        overall = apply_scheduler_status(overall_status(services), scheduler)
    payload: dict[str, Any] = {
        "status": overall,
        "timestamp": timezone.now().isoformat(),
        "services": {s.name: s.status_dict() for s in services or []},
        "database": with_spool(database),
        "tunnels": tunnels,
        "incidents": {"open": open_incidents},
        "recovery": recovery,
        "scheduler": scheduler,
    }
    if failures:
        payload["unavailable"] = failures
    return payload


_CHECK_STATUS = {UP: "pass", DEGRADED: "warn", DOWN: "fail", UNKNOWN: "warn", PAUSED: "warn"}
_OVERALL_STATUS = {HEALTHY: "pass", DEGRADED: "warn", DOWN: "fail"}
_COMPONENT_TYPE = {"database": "datastore", "postgres": "datastore", "system": "system"}


def _check(component: str, kind: str, status: str, latency: float | None, time_: str | None, output: str) -> tuple:
    entry: dict[str, Any] = {"componentId": component, "componentType": _COMPONENT_TYPE.get(kind, "component")}
    if latency is None:
        key = f"{component}:status"
        entry["observedValue"] = status
    else:
        key = f"{component}:responseTime"
        entry.update({"observedValue": latency, "observedUnit": "ms"})
    entry.update({"status": _CHECK_STATUS.get(status, "warn"), "time": time_, "output": output})
    return key, [entry]


def health_json_payload(status: dict[str, Any]) -> dict[str, Any]:
    """/health/status in the IETF Health Check Response Format (draft-inadarei-api-health-check)."""
    info = build_info()
    checks: dict[str, list[dict[str, Any]]] = {}
    for name, s in status["services"].items():
        key, entry = _check(name, s["kind"], s["status"], s["latencyMs"], s["lastCheckedAt"], s["detail"])
        checks[key] = entry
    db = status["database"]
    # Service names are lowercase slugs, so this camel-case key never collides with a service's.
    key, entry = _check("portalDatabase", "database", db["status"], db.get("latencyMs"), status["timestamp"], "")
    checks[key] = entry
    payload: dict[str, Any] = {
        "status": _OVERALL_STATUS[status["status"]],
        "version": info.get("version", version.version()),
        "serviceId": "opsportal",
        "description": "opsportal: the services it watches and its own database",
        "checks": checks,
    }
    if info.get("commit"):
        payload["releaseId"] = info["commit"]
    if status["status"] != HEALTHY:
        bad = [n for n, s in status["services"].items() if s["status"] != UP]
        payload["output"] = "not up: " + ", ".join(bad) if bad else f"overall {status['status']}"
    return payload


def wants_health_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return HEALTH_JSON in [part.split(";")[0].strip().lower() for part in accept.split(",")]


def incident_dict(i: Incident) -> dict[str, Any]:
    return {
        "id": i.pk,
        "service": i.service.name,
        "status": "open" if i.is_open else "resolved",
        "severity": i.severity,
        "openedAt": i.opened_at.isoformat(),
        "acknowledgedAt": i.acknowledged_at.isoformat() if i.acknowledged_at else None,
        "acknowledgedBy": i.acknowledged_by.get_username() if i.acknowledged_by else None,
        "resolvedAt": i.resolved_at.isoformat() if i.resolved_at else None,
        "cause": i.cause,
        "lastError": i.last_error,
        "parent": i.parent_id,
    }


def incidents_payload(status: str | None, service: str | None, limit: int, offset: int) -> dict[str, Any]:
    rows = Incident.objects.select_related("service", "acknowledged_by").order_by("-opened_at", "-pk")
    if status == "open":
        rows = rows.filter(resolved_at__isnull=True)
    elif status == "resolved":
        rows = rows.filter(resolved_at__isnull=False)
    if service is not None:
        existing_services([service])
        rows = rows.filter(service__name=service)
    return {"incidents": [incident_dict(i) for i in rows[offset : offset + limit]], "limit": limit, "offset": offset}


def uptime_payload(service: str | None) -> dict[str, Any]:
    """GET /health/uptime: per service and window (24h, 7d, 30d) the uptime % and what it counted.

    The dashboard's figures (health.rollups.uptime_tallies: rollups where raw rows were pruned): results
    taken in maintenance are left out and reported as `maintenance`; `uptime` is null when nothing counted.
    """
    rows = Service.objects.order_by("name")
    if service is not None:
        existing_services([service])
        rows = rows.filter(name=service)
    names = dict(rows.values_list("pk", "name"))
    tallies = uptime_tallies(list(names), timezone.now())
    return {
        "windows": list(UPTIME_WINDOWS),
        "services": {
            names[pk]: {
                key: {
                    "uptime": None if t.uptime is None else round(t.uptime, 3),
                    "counted": t.counted,
                    "maintenance": t.maintenance,
                }
                for key, t in windows.items()
            }
            for pk, windows in tallies.items()
        },
    }


def recover_payload(body: dict[str, Any], user: Any, via: str) -> dict[str, Any]:
    """Validate the named services (404 before anything runs), run the engine, answer with its results."""
    names = existing_services(body.get("services") or []) or None
    try:
        results = recover_services(names, trigger="api", user=user, via=via, force=body.get("force", False))
    except RecoveryNotAvailable as exc:
        raise ApiError(f"recovery is not available: {exc}", 501) from None
    except Service.DoesNotExist:
        raise ApiError("unknown service", 404) from None
    attempted = [r for r in results if not r.skipped]
    if not results:
        message = "No service needs recovery" if names is None else "Nothing to recover"
    else:
        message = f"Recovery attempted for {len(attempted)} of {len(results)} service(s)"
    return {
        "message": message,
        "attempted": len(attempted),
        "services": [r.service for r in results],
        "results": [r.as_dict() for r in results],
        "stats": recovery_stats(),
    }


def public_setting() -> bool:
    return bool(getattr(settings, "HEALTH_PUBLIC", True))
