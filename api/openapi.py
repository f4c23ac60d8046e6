"""The OpenAPI 3 description of the JSON health API, served at /health/openapi.json.

Kept next to the views and checked against the live endpoints by schemathesis in the tests.
"""

from __future__ import annotations

from typing import Any

from core.spec import SLUG
from core.version import version
from health.incidents import MESSAGE_MAX
from health.spec import UPDATE_STATUSES
from recovery.models import RecoveryAttempt

_NULL_STR = {"type": "string", "nullable": True}
_NULL_NUM = {"type": "number", "nullable": True}
OUTCOMES = [o.value for o in RecoveryAttempt.Outcome]
SLUG_PATTERN = SLUG.pattern

_NULL_INT = {"type": "integer", "nullable": True}


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = True) -> dict[str, Any]:
    """An object schema; every property required unless `required` names them (`[]`: none is)."""
    schema: dict[str, Any] = {"type": "object", "properties": props}
    required = list(props) if required is None else required
    if required:  # OpenAPI 3.0 (JSON Schema draft 4) wants a non-empty list, or no `required` at all
        schema["required"] = required
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_UNAUTHORIZED = {
    **_err("Missing, invalid or revoked credentials"),
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
}
_METHOD = {**_err("Method not allowed"), "headers": {"Allow": {"schema": {"type": "string"}, "required": True}}}
# Too many bad bearer tokens from one address (API_BAD_TOKEN_LIMIT in API_BAD_TOKEN_WINDOW): any endpoint
# that reads a token may answer this before it looks at anything else.
_THROTTLED = {
    **_err("Too many requests with a bad API token from this address"),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": True, "description": "seconds to wait"}},
}
_PROTECTED = {"401": _UNAUTHORIZED, "403": _err("A session user who is not staff"), "429": _THROTTLED}
_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 100000, "default": 0}},
]
_SECURITY = [{}, {"bearerAuth": []}, {"sessionAuth": []}]

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {"type": "string"}}, extra=False),
    "Live": _obj(
        {
            "status": {"type": "string", "enum": ["alive"]},
            "pid": {"type": "integer"},
            "uptime": {"type": "integer", "description": "seconds since the process started"},
            "version": {"type": "string"},
        }
    ),
    "Database": _obj(
        {
            "status": {"type": "string", "enum": ["up", "down"]},
            "latencyMs": _NULL_NUM,
            "circuitBreaker": _obj({"state": {"type": "string"}, "consecutiveFailures": {"type": "integer"}}),
            "spool": _obj(
                {
                    "bytes": {"type": "integer", "description": "bytes waiting in the outage spool"},
                    "records": {"type": "integer", "description": "records waiting in the outage spool"},
                    "dropped": {
                        "type": "integer",
                        "description": "records dropped (spool full) on this host, kept across restarts",
                    },
                },
                extra=False,
            ),
        },
        required=["status", "latencyMs", "circuitBreaker"],
    ),
    "Ready": _obj(
        {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "reason": {"type": "string"},
            "database": _ref("Database"),
        },
        required=["status", "database"],
    ),
    "ServiceStatus": _obj(
        {
            "kind": {"type": "string"},
            "status": {"type": "string", "enum": ["unknown", "up", "degraded", "down", "misconfigured", "paused"]},
            "critical": {"type": "boolean"},
            "latencyMs": _NULL_NUM,
            "lastCheckedAt": {**_NULL_STR, "format": "date-time"},
            "consecutiveFailures": {"type": "integer"},
            "detail": {"type": "string"},
            "flapping": {"type": "boolean"},
            "maintenance": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "the service's labels"},
            "pingUrl": {
                "type": "string",
                "format": "uri",
                "description": "a push service's ping URL; only in answers to staff (session or staff token)",
            },
        },
        required=[
            "kind",
            "status",
            "critical",
            "latencyMs",
            "lastCheckedAt",
            "consecutiveFailures",
            "detail",
            "flapping",
            "maintenance",
            "tags",
        ],
    ),
    "RecoveryStats": _obj(
        {
            "total": {"type": "integer"},
            "successful": {"type": "integer"},
            "failed": {"type": "integer"},
            "successRate": {"type": "string", "pattern": r"^\d+\.\d%$"},
            "skipped": {"type": "integer", "description": "attempts not run (cooldown, escalated, busy, disabled)"},
            "byService": {"type": "object", "additionalProperties": {"type": "integer"}},
            "byAction": {
                "type": "object",
                "additionalProperties": _obj(
                    {
                        "total": {"type": "integer"},
                        "successful": {"type": "integer"},
                        "failed": {"type": "integer"},
                        "successRate": {"type": "string"},
                    }
                ),
            },
            "byOutcome": {"type": "object", "additionalProperties": {"type": "integer"}},
            "meanTimeToRecoverMs": _NULL_NUM,
            "isRecovering": {"type": "boolean"},
        }
    ),
    "Status": _obj(
        {
            "status": {"type": "string", "enum": ["healthy", "degraded", "down"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "services": {"type": "object", "additionalProperties": _ref("ServiceStatus")},
            "database": _ref("Database"),
            "tunnels": {"type": "object", "additionalProperties": {"type": "object"}},
            "incidents": _obj({"open": _NULL_INT}),
            "recovery": {"allOf": [_ref("RecoveryStats")], "nullable": True},
            "scheduler": _obj({"status": {"type": "string"}, "lastRunAt": _NULL_STR, "lagSeconds": _NULL_NUM}),
        }
    ),
    "HealthJson": _obj(
        {
            "status": {"type": "string", "enum": ["pass", "warn", "fail"]},
            "version": {"type": "string"},
            "serviceId": {"type": "string"},
            "checks": {
                "type": "object",
                "additionalProperties": {
                    "type": "array",
                    "minItems": 1,
                    "items": _obj(
                        {
                            "componentId": {"type": "string"},
                            "componentType": {"type": "string"},
                            "observedValue": {},
                            "observedUnit": {"type": "string", "enum": ["ms"]},
                            "status": {"type": "string", "enum": ["pass", "warn", "fail"]},
                            "time": _NULL_STR,
                            "output": {"type": "string"},
                        },
                        required=["componentType", "observedValue", "status", "time", "output"],
                    ),
                },
            },
        }
    ),
    "Attempt": _obj(
        {
            "id": {"type": "integer"},
            "service": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "finishedAt": {**_NULL_STR, "format": "date-time"},
            "outcome": {"type": "string", "enum": OUTCOMES},
            "success": {"type": "boolean"},
            "skipped": {"type": "boolean"},
            "trigger": {"type": "string", "enum": ["auto", "manual", "api", "watchdog"]},
            "requestedBy": _NULL_STR,
            "action": {"type": "string"},
            "actionOk": {"type": "boolean", "nullable": True},
            "verified": {"type": "boolean", "nullable": True},
            "durationMs": _NULL_NUM,
            "detail": {"type": "string"},
            "repairLoop": {"type": "boolean"},
        }
    ),
    "RecoveryStatsBody": _obj(
        {
            "stats": _ref("RecoveryStats"),
            "history": {"type": "array", "items": _ref("Attempt")},
            "needsRecovery": _obj(
                {"needed": {"type": "boolean"}, "services": {"type": "array", "items": {"type": "string"}}}
            ),
        }
    ),
    "RecoverRequest": _obj(
        {
            "services": {
                "type": "array",
                "items": {"type": "string", "pattern": SLUG_PATTERN},
                "description": "Services to recover; none named means those that need it.",
            },
            "force": {"type": "boolean", "default": False, "description": "ignore the cooldown"},
        },
        required=[],
        extra=False,
    ),
    "RecoverResponse": _obj(
        {
            "message": {"type": "string"},
            "attempted": {"type": "integer"},
            "services": {"type": "array", "items": {"type": "string"}},
            "results": {
                "type": "array",
                "items": _obj(
                    {
                        "service": {"type": "string"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "success": {"type": "boolean"},
                        "skipped": {"type": "boolean"},
                        "reason": _NULL_STR,
                        "outcome": {"type": "string", "enum": OUTCOMES},
                        "attempt": _NULL_INT,
                        "action": _NULL_STR,
                        "verified": {"type": "boolean", "nullable": True},
                        "detail": _NULL_STR,
                        "durationMs": _NULL_NUM,
                    }
                ),
            },
            "stats": _ref("RecoveryStats"),
        }
    ),
    "Incident": _obj(
        {
            "id": {"type": "integer"},
            "service": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "resolved"]},
            "severity": {"type": "string"},
            "openedAt": {"type": "string", "format": "date-time"},
            "acknowledgedAt": {**_NULL_STR, "format": "date-time"},
            "acknowledgedBy": _NULL_STR,
            "resolvedAt": {**_NULL_STR, "format": "date-time"},
            "cause": {"type": "string"},
            "lastError": {"type": "string"},
            "parent": _NULL_INT,
        }
    ),
    "TimelineEntry": _obj(
        {
            "at": {"type": "string", "format": "date-time"},
            "kind": {
                "type": "string",
                "description": "state_change, opened, notification, recovery, acknowledged, escalated, update, "
                "resolved, postmortem",
            },
            "title": {"type": "string"},
            "detail": {"type": "string"},
            "data": {
                "type": "object",
                "description": "the kind's fields (a notification's channel and status, an attempt's outcome and "
                "verification…); a recovery's actionDetail and evidence only with a token or staff session, "
                "else named in withheld",
            },
        }
    ),
    "IncidentDetail": {
        "allOf": [
            _ref("Incident"),
            _obj(
                {
                    "declaredBy": _NULL_STR,
                    "postmortem": {"type": "string"},
                    "timeline": {"type": "array", "items": _ref("TimelineEntry")},
                }
            ),
        ]
    },
    "Incidents": _obj(
        {
            "incidents": {"type": "array", "items": _ref("Incident")},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        }
    ),
    "IncidentUpdateRequest": _obj(
        {
            "status": {"type": "string", "enum": list(UPDATE_STATUSES)},
            "message": {"type": "string", "minLength": 1, "maxLength": MESSAGE_MAX},
            "public": {"type": "boolean", "default": True, "description": "sent to the channels and status pages"},
        },
        required=["status", "message"],
        extra=False,
    ),
    "IncidentUpdate": _obj(
        {
            "id": {"type": "integer"},
            "incident": {"type": "integer"},
            "service": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": list(UPDATE_STATUSES)},
            "message": {"type": "string"},
            "public": {"type": "boolean"},
            "author": _NULL_STR,
            "incidentStatus": {"type": "string", "enum": ["open", "resolved"]},
        }
    ),
    "UptimeWindow": _obj(
        {
            "uptime": {**_NULL_NUM, "description": "answered / counted, in %; null when nothing counted"},
            "counted": {"type": "integer", "description": "results counted (taken outside maintenance)"},
            "maintenance": {"type": "integer", "description": "results taken in maintenance, left out"},
        },
        required=["uptime", "counted", "maintenance"],
    ),
    "Uptime": _obj(
        {
            "windows": {"type": "array", "items": {"type": "string"}},
            "services": {
                "type": "object",
                "additionalProperties": {"type": "object", "additionalProperties": _ref("UptimeWindow")},
            },
        }
    ),
}


def _get(summary: str, ok: dict[str, Any], *, extra: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    responses = {"200": ok, "405": _METHOD, **(extra or {})}
    return {"get": {"summary": summary, "responses": responses, **more}}


def build_openapi() -> dict[str, Any]:
    readable = {"security": _SECURITY}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "opsportal health API",
            "version": version(),
            "description": (
                "Status, recovery and metrics of the services opsportal watches. Read endpoints are public "
                "while HEALTH_PUBLIC is true; POST /health/recover and the write API under /api/v1/ always "
                "need a staff token or session."
            ),
        },
        "paths": {
            "/health/live": _get("The process is alive (never touches the database)", _json(_ref("Live"), "Alive")),
            "/health/ready": _get(
                "The database answers and migrations are applied",
                _json(_ref("Ready"), "Ready"),
                extra={"503": _json(_ref("Ready"), "Not ready, with the reason")},
            ),
            "/health/status": _get(
                "Overall, per-service, database, tunnel, incident and recovery status",
                {
                    "description": "healthy or degraded",
                    "content": {
                        "application/json": {"schema": _ref("Status")},
                        "application/health+json": {"schema": _ref("HealthJson")},
                    },
                },
                extra={
                    "503": {
                        "description": "down (a critical service is HARD down, or the database is unreachable)",
                        "content": {
                            "application/json": {"schema": _ref("Status")},
                            "application/health+json": {"schema": _ref("HealthJson")},
                        },
                    },
                    **_PROTECTED,
                },
                **readable,
            ),
            "/health/recovery-stats": _get(
                "Recovery statistics, history (newest first) and what needs recovery",
                _json(_ref("RecoveryStatsBody"), "Stats"),
                extra={"400": _err("A bad query parameter"), **_PROTECTED},
                parameters=_PAGING,
                **readable,
            ),
            "/health/incidents": _get(
                "Recent incidents, newest first",
                _json(_ref("Incidents"), "Incidents"),
                extra={"400": _err("A bad query parameter"), "404": _err("Unknown service"), **_PROTECTED},
                parameters=[
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "resolved"]}},
                    {"name": "service", "in": "query", "schema": {"type": "string", "pattern": SLUG_PATTERN}},
                    *_PAGING,
                ],
                **readable,
            ),
            "/health/incidents/{id}": _get(
                "One incident with its timeline, in order: state changes, notifications, recovery, updates",
                _json(_ref("IncidentDetail"), "The incident"),
                extra={"404": _err("Unknown incident"), **_PROTECTED},
                parameters=[
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
                ],
                **readable,
            ),
            "/health/uptime": _get(
                "Uptime over 24 h, 7 d and 30 d per service; maintenance left out and counted apart",
                _json(_ref("Uptime"), "Uptime"),
                extra={"400": _err("A bad query parameter"), "404": _err("Unknown service"), **_PROTECTED},
                parameters=[{"name": "service", "in": "query", "schema": {"type": "string", "pattern": SLUG_PATTERN}}],
                **readable,
            ),
            "/health/recover": {
                "post": {
                    "summary": "Recover the named services, or those that need it (staff only)",
                    "security": [{"bearerAuth": []}, {"sessionAuth": []}],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("RecoverRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("RecoverResponse"), "Results of the attempts"),
                        "400": _err(
                            "The body is not a JSON object, is nested too deeply, has unknown keys or wrong types"
                        ),
                        "401": _UNAUTHORIZED,
                        "403": _err(
                            "Not staff, or without the permission recovery.run_recovery, "
                            "or a session without a valid CSRF token"
                        ),
                        "404": _err("Unknown service"),
                        "405": _METHOD,
                        "411": _err("A body without Content-Length (chunked transfer encoding)"),
                        "413": _err("Body larger than 64 KiB"),
                        "429": _THROTTLED,
                        "501": _err("The recovery engine is not available"),
                    },
                }
            },
            "/api/v1/incidents/{id}/updates": {
                "post": {
                    "summary": "Post an update on an incident; a public one goes to the channels and status pages",
                    "security": [{"bearerAuth": []}, {"sessionAuth": []}],
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("IncidentUpdateRequest")}},
                    },
                    "responses": {
                        "201": _json(_ref("IncidentUpdate"), "The update as recorded"),
                        "400": _err(
                            "The body is not a JSON object, misses status or message, has unknown keys, "
                            "an unknown status, or a message empty or longer than 5000 characters"
                        ),
                        "401": _UNAUTHORIZED,
                        "403": _err(
                            "Not staff, or without the permission health.post_incident_update, "
                            "or a session without a valid CSRF token"
                        ),
                        "404": _err("Unknown incident"),
                        "405": _METHOD,
                        "411": _err("A body without Content-Length (chunked transfer encoding)"),
                        "413": _err("Body larger than 64 KiB"),
                        "429": _THROTTLED,
                    },
                }
            },
            "/metrics": _get(
                "Prometheus text exposition",
                {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                extra={"401": _UNAUTHORIZED, "403": _err("A session user who is not staff"), "429": _THROTTLED},
                security=[{}, {"bearerAuth": []}, {"sessionAuth": []}],
            ),
            "/health/openapi.json": _get(
                "This document",
                {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}},
            ),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "from `manage.py createapitoken`"},
                "sessionAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
        },
    }
