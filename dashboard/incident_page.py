"""The dashboard's incident page: the incident, its timeline (health.timeline, the same entries as
GET /health/incidents/<id>) and the actions on it (dashboard/_incident_actions.html)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard.views import staff_required
from health import timeline
from health.models import Incident


def _text(value: Any) -> str:
    """A piece of evidence as a page shows it: text as it is, anything else as indented JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _row(entry: timeline.TimelineEntry) -> dict[str, Any]:
    """An entry and what the template shows collapsed: the action's output and the evidence, piece by piece."""
    evidence = entry.data.get("evidence") if entry.kind == timeline.RECOVERY else None
    return {
        "entry": entry,
        "output": (entry.data.get("actionDetail") or "") if entry.kind == timeline.RECOVERY else "",
        "evidence": [(str(k), _text(v)) for k, v in evidence.items()] if isinstance(evidence, dict) else [],
    }


@require_GET
@staff_required
def incident(request: HttpRequest, pk: int) -> HttpResponse:
    found = get_object_or_404(
        Incident.objects.select_related("service", "acknowledged_by", "declared_by", "parent__service"), pk=pk
    )
    now = timezone.now()
    entries = timeline.build(found, now=now)
    context = {"incident": found, "rows": [_row(e) for e in entries], "now": now}
    return render(request, "dashboard/incident.html", context)
