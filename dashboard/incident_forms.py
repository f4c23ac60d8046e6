"""The dashboard's incident forms: post an update, declare an incident on a service, close a declared one,
write the postmortem. Thin views over health.incidents; each checks its permission, every form carries
CSRF, and each lands back on the incident page (/incidents/<pk>/) with a message. A refused form is shown
again (400) with its error and what was typed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.views import permission_required
from health import incidents
from health.incidents import CAUSE_MAX, DECLARE_SEVERITIES, MESSAGE_MAX, POSTMORTEM_MAX, IncidentError
from health.models import Incident, Service
from health.permissions import DECLARE_INCIDENT, POST_INCIDENT_UPDATE
from health.spec import UPDATE_STATUSES


def incident_url(pk: int) -> str:
    # The incident page (its own view, dashboard.views); by path, so this module does not depend on its name.
    return f"/incidents/{pk}/"


def _message_field(required: bool) -> forms.CharField:
    return forms.CharField(
        required=required, max_length=MESSAGE_MAX, widget=forms.Textarea(attrs={"rows": 4, "maxlength": MESSAGE_MAX})
    )


class UpdateForm(forms.Form):
    status = forms.ChoiceField(choices=[(s, s) for s in UPDATE_STATUSES])
    message = _message_field(required=True)
    public = forms.BooleanField(required=False, help_text="Shown on status pages and sent to the channels.")


class CloseForm(forms.Form):
    message = _message_field(required=False)
    public = forms.BooleanField(required=False)


class PostmortemForm(forms.Form):
    postmortem = forms.CharField(
        required=False,
        max_length=POSTMORTEM_MAX,
        widget=forms.Textarea(attrs={"rows": 12, "maxlength": POSTMORTEM_MAX}),
    )


class DeclareForm(forms.Form):
    severity = forms.ChoiceField(choices=[(s, s) for s in DECLARE_SEVERITIES], initial="warning")
    cause = forms.CharField(max_length=CAUSE_MAX, help_text="The title: what is wrong.")
    message = _message_field(required=False)
    public = forms.BooleanField(required=False, initial=True, help_text="The first update is public.")


def _refused(request: HttpRequest, incident: Incident, form: forms.Form, title: str, action: str) -> HttpResponse:
    context = {"incident": incident, "form": form, "title": title, "action": action, "back": incident_url(incident.pk)}
    return render(request, "dashboard/incident_form.html", context, status=400)


def _error(form: forms.Form, exc: IncidentError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _incident(pk: int) -> Incident:
    return get_object_or_404(Incident.objects.select_related("service"), pk=pk)


@require_POST
@permission_required(POST_INCIDENT_UPDATE)
def incident_update(request: HttpRequest, pk: int) -> HttpResponse:
    incident = _incident(pk)
    form = UpdateForm(request.POST)
    if form.is_valid():
        data: dict[str, Any] = form.cleaned_data
        try:
            update = incidents.post_update(
                incident, status=data["status"], message=data["message"], public=data["public"], author=request.user
            )
        except IncidentError as exc:
            _error(form, exc)
        else:
            where = "a public" if update.public else "an internal"
            text = f"Posted {where} update ({update.status}) on the incident of {incident.service.name}."
            if incident.resolved_at is not None and incident.resolved_at == update.created_at:
                text += " The declared incident is resolved."
            messages.success(request, text)
            return HttpResponseRedirect(incident_url(pk))
    return _refused(request, incident, form, "Post an update", "dashboard:incident-update")


@require_POST
@permission_required(POST_INCIDENT_UPDATE)
def incident_postmortem(request: HttpRequest, pk: int) -> HttpResponse:
    incident = _incident(pk)
    form = PostmortemForm(request.POST)
    if form.is_valid():
        try:
            incidents.set_postmortem(incident, form.cleaned_data["postmortem"])
        except IncidentError as exc:
            _error(form, exc)
        else:
            word = "saved" if incident.postmortem else "removed"
            messages.success(request, f"Postmortem of the incident of {incident.service.name} {word}.")
            return HttpResponseRedirect(incident_url(pk))
    return _refused(request, incident, form, "Write the postmortem", "dashboard:incident-postmortem")


@require_POST
@permission_required(DECLARE_INCIDENT)
def incident_close(request: HttpRequest, pk: int) -> HttpResponse:
    incident = _incident(pk)
    form = CloseForm(request.POST)
    if form.is_valid():
        try:
            closed = incidents.close(
                incident, user=request.user, message=form.cleaned_data["message"], public=form.cleaned_data["public"]
            )
        except IncidentError as exc:
            _error(form, exc)
        else:
            if closed:
                messages.success(request, f"Closed the declared incident of {incident.service.name}.")
            else:
                messages.info(request, f"The incident of {incident.service.name} was already resolved.")
            return HttpResponseRedirect(incident_url(pk))
    return _refused(request, incident, form, "Close the incident", "dashboard:incident-close")


@require_http_methods(["GET", "POST"])
@permission_required(DECLARE_INCIDENT)
def service_declare(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the form. POST: open a declared incident on the service, then to its page."""
    service = get_object_or_404(Service, name=name)
    open_incident = Incident.objects.filter(service=service, resolved_at__isnull=True).first()
    form = DeclareForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            incident = incidents.declare(
                service,
                severity=data["severity"],
                cause=data["cause"],
                user=request.user,
                message=data["message"],
                public=data["public"],
            )
        except IncidentError as exc:
            _error(form, exc)
            open_incident = Incident.objects.filter(service=service, resolved_at__isnull=True).first()
        else:
            messages.success(request, f"Declared an incident on {service.name}: {incident.cause}")
            return HttpResponseRedirect(incident_url(incident.pk))
    context = {
        "service": service,
        "form": form,
        "open_incident": open_incident,
        "open_url": incident_url(open_incident.pk) if open_incident else "",
    }
    return render(request, "dashboard/service_declare.html", context, status=400 if form.is_bound else 200)
