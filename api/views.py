"""The JSON health API: thin views over api.base (parsing, payloads) and api.auth (credentials)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST

from api import base as api
from api.auth import ApiRequest, metrics_readable, permission_required, readable, staff_asks, via
from api.base import api_view, json_response
from api.metrics import cached_exposition
from api.openapi import build_openapi
from api.snapshot import cached_status
from core.mask import mask
from health import timeline
from health.models import Incident
from health.permissions import RUN_RECOVERY
from recovery.stats import stats_payload


@api_view("GET")
def live(request: HttpRequest) -> HttpResponse:
    return json_response(api.live_payload())


@api_view("GET")
def ready(request: HttpRequest) -> HttpResponse:
    payload, status = api.ready_payload()
    return json_response(payload, status=status)


@api_view("GET")
@readable
def status(request: HttpRequest) -> HttpResponse:
    # The database reads come from a snapshot at the current state version (api.snapshot); the database
    # check and the outage spool are live.
    answer = cached_status()
    if api.wants_health_json(request):
        return json_response(api.health_json_payload(answer.payload), status=answer.code, content_type=api.HEALTH_JSON)
    if staff_asks(request):
        # The shared snapshot holds no per-user part: staff get the ping URLs overlaid (one more query).
        return json_response(api.with_ping_urls(answer.payload), status=answer.code)
    if answer.body is None:
        return json_response(answer.payload, status=answer.code)
    # Already encoded (the services' part once per snapshot, not per request); the headers json_response sets.
    response = HttpResponse(answer.body, status=answer.code, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


@api_view("GET")
@readable
def recovery_stats(request: HttpRequest) -> HttpResponse:
    limit = api.int_param(request, "limit", 50, 1, 500)
    offset = api.int_param(request, "offset", 0, 0, 100_000)
    return json_response(stats_payload(limit, offset))


@api_view("GET")
@readable
def incidents(request: HttpRequest) -> HttpResponse:
    status_filter = api.choice_param(request, "status", ("open", "resolved"))
    service = api.name_param(request, "service")
    limit = api.int_param(request, "limit", 50, 1, 500)
    offset = api.int_param(request, "offset", 0, 0, 100_000)
    return json_response(api.incidents_payload(status_filter, service, limit, offset))


@api_view("GET")
@readable
def incident(request: HttpRequest, pk: int) -> HttpResponse:
    """One incident with its timeline (health.timeline: built from the rows that record it)."""
    found = Incident.objects.select_related("service", "acknowledged_by", "declared_by").filter(pk=pk).first()
    if found is None:
        return api.error(f"no incident {pk}", 404)
    # What a repair printed and its evidence (log tails, processes) are for operators, as ping URLs are.
    operator = staff_asks(request)
    payload = api.incident_dict(found) | {
        "declaredBy": timeline.username(found.declared_by),
        "postmortem": mask(found.postmortem),
        "timeline": [entry.as_dict(operator=operator) for entry in timeline.build(found)],
    }
    return json_response(payload)


@api_view("GET")
@readable
def uptime(request: HttpRequest) -> HttpResponse:
    return json_response(api.uptime_payload(api.name_param(request, "service")))


@api_view("POST")
@permission_required(RUN_RECOVERY)
def recover(request: ApiRequest) -> HttpResponse:
    body = api.parse_object(request, {"services": api.SERVICES_FIELD, "force": api.BOOL_FIELD})
    return json_response(api.recover_payload(body, request.api_user, via(request)))


@api_view("GET")
def openapi(request: HttpRequest) -> HttpResponse:
    return json_response(build_openapi())


@api_view("GET")
@metrics_readable
def metrics(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(cached_exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def not_found(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    """Unknown paths under /health/ answer JSON, not Django's HTML 404 page."""
    return api.error(f"no such endpoint: {request.path}", 404)
