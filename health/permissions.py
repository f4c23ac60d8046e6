"""The Django permissions of the portal's actions, checked by the dashboard, the API and the admin.

Declared on the models (Meta.permissions): staff status alone lets a user read, never act. Superusers
have every permission. Management commands run as the machine's operator and are not checked.
"""

from __future__ import annotations

from typing import Any

RUN_RECOVERY = "recovery.run_recovery"
PAUSE_SERVICE = "health.pause_service"
ACKNOWLEDGE_INCIDENT = "health.acknowledge_incident"
PROBE_NOW = "health.probe_now"
POST_INCIDENT_UPDATE = "health.post_incident_update"  # updates and postmortems (health.incidents)
DECLARE_INCIDENT = "health.declare_incident"  # open and close an incident by hand
ACTIONS = (RUN_RECOVERY, PAUSE_SERVICE, ACKNOWLEDGE_INCIDENT, PROBE_NOW, POST_INCIDENT_UPDATE, DECLARE_INCIDENT)


def denied(permission: str) -> str:
    """The 403 text every face answers: it names what is missing, so an administrator knows what to grant."""
    return f"permission required: {permission}"


def allowed(user: Any, permission: str) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(permission))
