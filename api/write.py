"""The write API (/api/v1/…): thin views over the domain's service functions (health.incidents).

Each endpoint takes a bearer token or a staff session with CSRF (api.auth), checks its permission, and
answers every error through api.base.error (via ApiError)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from api import base as api
from api.auth import ApiRequest, permission_required
from api.base import ApiError, Field, api_view, json_response
from health.incidents import MESSAGE_MAX, IncidentError, post_update
from health.models import Incident, IncidentUpdate
from health.permissions import POST_INCIDENT_UPDATE
from health.spec import UPDATE_STATUSES

UPDATE_FIELDS = {
    "status": Field(lambda v: v in UPDATE_STATUSES, "one of " + ", ".join(UPDATE_STATUSES)),
    "message": Field(
        lambda v: isinstance(v, str) and bool(v.strip()) and len(v.strip()) <= MESSAGE_MAX,
        f"a non-empty string of at most {MESSAGE_MAX} characters",
    ),
    "public": api.BOOL_FIELD,
}
REQUIRED = ("status", "message")


def update_dict(update: IncidentUpdate) -> dict[str, Any]:
    incident = update.incident
    return {
        "id": update.pk,
        "incident": incident.pk,
        "service": incident.service.name,
        "createdAt": update.created_at.isoformat(),
        "status": update.status,
        "message": update.message,
        "public": update.public,
        "author": update.author.get_username() if update.author else None,
        # Whether the incident is open after this update (a `resolved` update closes a declared one).
        "incidentStatus": "open" if incident.is_open else "resolved",
    }


@api_view("POST")
@permission_required(POST_INCIDENT_UPDATE)
def incident_updates(request: ApiRequest, pk: int) -> HttpResponse:
    incident = Incident.objects.select_related("service").filter(pk=pk).first()
    if incident is None:
        raise ApiError(f"unknown incident {pk}", 404)
    body = api.parse_object(request, UPDATE_FIELDS)
    missing = [key for key in REQUIRED if key not in body]
    if missing:
        raise ApiError(f"{missing[0]!r} is required")
    try:
        update = post_update(
            incident,
            status=body["status"],
            message=body["message"],
            public=body.get("public", True),
            author=request.api_user,
        )
    except IncidentError as exc:
        raise ApiError(f"{exc.field!r}: {exc.message}") from None
    return json_response(update_dict(update), status=201)
