"""The staff dashboard: thin views over dashboard.reports (queries) and the same service functions
the commands and the API call. Every mutating button is a POST with CSRF that lands back
with a message."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.db import database_status
from core.version import build_info, version
from dashboard import reports, svg
from dispatch import manual, rounds
from dispatch.scheduler import scheduler_status
from health.models import Incident, Ping, ProbeResult, Service
from health.permissions import ACKNOWLEDGE_INCIDENT, PAUSE_SERVICE, PROBE_NOW, RUN_RECOVERY, allowed, denied
from health.pings import ping_url
from recovery import stats as recovery_stats
from recovery.models import RecoveryAttempt
from tunnels.status import tunnels_status

PAGE_SIZE = 50
RECENT_ATTEMPTS = 10


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous: to the login page. Logged in but not staff: 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return wrapper


def permission_required(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A staff user who has `permission` (superusers have all); 403 naming it otherwise. Staff alone only reads."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        @staff_required
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not allowed(request.user, permission):
                raise PermissionDenied(denied(permission))
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """Back to where the form was (a local URL only), else `default`."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        target = default
    return HttpResponseRedirect(target)


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "dashboard/error.html", {"message": message}, status=400)


def _refresh() -> int:
    return settings.DASHBOARD_REFRESH_SECONDS


def portal_context(request: HttpRequest) -> dict[str, Any]:
    """Template context for every page (the footer's version and build)."""
    return {"version": version(), "build": build_info()}


# --- overview -----------------------------------------------------------------------------------


def _page(request: HttpRequest) -> int | None:
    raw = request.GET.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 100_000 else None


def _overview_context(page: int) -> dict[str, Any]:
    scheduler = scheduler_status()
    return {
        "data": reports.overview(scheduler=scheduler, page=page),
        "tunnels": tunnels_status(),
        "scheduler": scheduler,
        "database": database_status(),
        "attempts": [a | {"started": parse_datetime(a["timestamp"])} for a in recovery_stats.history(RECENT_ATTEMPTS)],
        "now": timezone.now(),
    }


@require_GET
@staff_required
def overview(request: HttpRequest) -> HttpResponse:
    page = _page(request)
    if page is None:
        return _bad_request(request, "page must be a positive whole number")
    return render(request, "dashboard/overview.html", _overview_context(page) | {"refresh": _refresh()})


@require_GET
@staff_required
def overview_live(request: HttpRequest) -> HttpResponse:
    page = _page(request)
    if page is None:
        return _bad_request(request, "page must be a positive whole number")
    return render(request, "dashboard/_overview.html", _overview_context(page))


# --- service page -------------------------------------------------------------------------------


def _service_context(request: HttpRequest, service: Service) -> dict[str, Any] | None:
    range_key = request.GET.get("range", reports.DEFAULT_RANGE)
    if range_key not in reports.RANGES:
        return None
    return {
        "service": service,
        "range": range_key,
        "ranges": list(reports.RANGES),
        "chart": svg.latency_chart(reports.latency_series(service, range_key), range_key=range_key),
        "card": reports.cards([service], timezone.now())[0],
        "now": timezone.now(),
        "recovery": manual.progress(service),
    }


@require_GET
@staff_required
def service_detail(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service, name=name)
    context = _service_context(request, service)
    if context is None:
        return _bad_request(request, "range must be one of " + ", ".join(reports.RANGES))
    results = Paginator(ProbeResult.objects.filter(service=service).order_by("-checked_at", "-pk"), PAGE_SIZE)
    context |= {
        "refresh": _refresh(),
        "results": results.get_page(request.GET.get("page")),
        "incidents": Incident.objects.filter(service=service).select_related("acknowledged_by")[:20],
        "attempts": RecoveryAttempt.objects.filter(service=service).select_related("requested_by")[:20],
        "config": reports.service_config(service),
        "actions": [(a, reports.action_config(a)) for a in service.recovery_actions.order_by("position")],
    }
    context["recoverable"] = any(a.enabled for a, _ in context["actions"])  # else no Recover button
    if service.kind == "push":
        # A heartbeat's address is its secret: shown to staff here, never on public answers.
        context["ping_url"] = ping_url(service.ping_uuid)
        context["pings"] = Ping.objects.filter(service_id=service.ping_uuid).order_by("-received_at", "-pk")[:10]
    return render(request, "dashboard/service.html", context)


@require_GET
@staff_required
def service_live(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service, name=name)
    context = _service_context(request, service)
    if context is None:
        return _bad_request(request, "range must be one of " + ", ".join(reports.RANGES))
    return render(request, "dashboard/_service.html", context)


@require_POST
@permission_required(PROBE_NOW)
def service_probe(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service, name=name)
    result = rounds.run([service], recover=False)
    outcome = result.outcomes[service.name]
    latency = "" if outcome.latency_ms is None else f" in {outcome.latency_ms:.0f} ms"
    level = messages.SUCCESS if outcome.status == "up" else messages.WARNING
    messages.add_message(request, level, f"Probed {service.name}: {outcome.status}{latency}. {outcome.detail}")
    return _back(request, reverse("dashboard:service", args=[service.name]))


@require_POST
@permission_required(PAUSE_SERVICE)
def service_pause(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service, name=name)
    action = request.POST.get("action")
    if action not in ("pause", "resume"):
        return _bad_request(request, "action must be pause or resume")
    changed = service.set_paused(action == "pause")
    word = "paused (maintenance: no incidents)" if action == "pause" else "resumed"
    messages.success(request, f"{service.name} {word}." if changed else f"{service.name} was already {word}.")
    return _back(request, reverse("dashboard:service", args=[service.name]))


class RecoverForm(forms.Form):
    force = forms.BooleanField(required=False, help_text="Ignore the cooldown and escalation for this attempt.")


@require_http_methods(["GET", "POST"])
@permission_required(RUN_RECOVERY)
def service_recover(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the confirmation (current state, cooldown, Force). POST: start the recovery in the background
    (dispatch.manual) and land back at once; the service page's live refresh shows its progress."""
    service = get_object_or_404(Service, name=name)
    if request.method == "GET":
        context = {
            "service": service,
            "state": reports.cooldown_state(service),
            "form": RecoverForm(),
            "now": timezone.now(),
        }
        return render(request, "dashboard/recover_confirm.html", context)
    form = RecoverForm(request.POST)
    if not form.is_valid():
        return _bad_request(request, "invalid form")
    level, text = _recover(service, request.user, force=form.cleaned_data["force"])
    messages.add_message(request, level, text)
    return _back(request, reverse("dashboard:service", args=[service.name]))


def _recover(service: Service, user: Any, *, force: bool) -> tuple[int, str]:
    started = manual.start(service, user, force=force)
    if started.started:
        return messages.SUCCESS, f"Recovery of {service.name} started: this page shows its progress and outcome."
    if started.busy:
        return messages.WARNING, f"Recovery of {service.name} is already running: {started.reason}. Nothing started."
    hint = " Force overrides it." if started.outcome in ("skipped_cooldown", "skipped_escalated") else ""
    return messages.WARNING, f"Recovery of {service.name} not started: {started.reason}.{hint}"


# --- incidents ----------------------------------------------------------------------------------


@require_POST
@permission_required(ACKNOWLEDGE_INCIDENT)
def incident_ack(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("service"), pk=pk)
    if incident.acknowledge(request.user):
        messages.success(request, f"Acknowledged the incident of {incident.service.name}.")
    else:
        messages.info(request, f"The incident of {incident.service.name} was already acknowledged or resolved.")
    return _back(request, reverse("dashboard:overview"))


class IncidentFilter(forms.Form):
    service = forms.SlugField(required=False)
    state = forms.ChoiceField(
        required=False,
        choices=[("", "any"), ("open", "open"), ("unacknowledged", "open, unacknowledged"), ("resolved", "resolved")],
    )
    severity = forms.ChoiceField(required=False, choices=[("", "any"), *Incident.Severity.choices])

    def queryset(self) -> Any:
        qs = Incident.objects.select_related("service", "acknowledged_by").order_by("-opened_at", "-pk")
        data = self.cleaned_data
        if data["service"]:
            qs = qs.filter(service__name=data["service"])
        state = data["state"]
        if state in ("open", "unacknowledged"):
            qs = qs.filter(resolved_at__isnull=True)
        if state == "unacknowledged":
            qs = qs.filter(acknowledged_at__isnull=True)
        if state == "resolved":
            qs = qs.filter(resolved_at__isnull=False)
        if data["severity"]:
            qs = qs.filter(severity=data["severity"])
        return qs


@require_GET
@staff_required
def incidents(request: HttpRequest) -> HttpResponse:
    return _filtered_list(request, IncidentFilter(request.GET), "dashboard/incidents.html")


class RecoveryFilter(forms.Form):
    service = forms.SlugField(required=False)
    outcome = forms.ChoiceField(required=False, choices=[("", "any"), *RecoveryAttempt.Outcome.choices])
    trigger = forms.ChoiceField(required=False, choices=[("", "any"), *RecoveryAttempt.Trigger.choices])

    def queryset(self) -> Any:
        qs = RecoveryAttempt.objects.select_related("service", "requested_by").order_by("-started_at", "-pk")
        data = self.cleaned_data
        if data["service"]:
            qs = qs.filter(service__name=data["service"])
        if data["outcome"]:
            qs = qs.filter(outcome=data["outcome"])
        if data["trigger"]:
            qs = qs.filter(trigger=data["trigger"])
        return qs


@require_GET
@staff_required
def recovery_history(request: HttpRequest) -> HttpResponse:
    return _filtered_list(request, RecoveryFilter(request.GET), "dashboard/recovery.html")


def _filtered_list(request: HttpRequest, form: Any, template: str) -> HttpResponse:
    if not form.is_valid():
        errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return _bad_request(request, f"Bad filter: {errors}")
    page = Paginator(form.queryset(), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, template, {"form": form, "page": page, "query": query.urlencode()})
