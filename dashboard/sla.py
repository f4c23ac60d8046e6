"""The SLA report page (/reports/sla/?month=YYYY-MM&service=NAME…): health.sla's report for a month picked with a
GET form, with its method, and the same report as CSV or JSON (`&format=csv|json`) to download. Bad input is a
form error on the page (400), never a traceback."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.views import staff_required
from health import sla
from health.models import Service

DOWNLOADS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class SlaForm(forms.Form):
    month = forms.CharField(
        label="Month",
        max_length=7,
        widget=forms.TextInput(attrs={"type": "month", "placeholder": "YYYY-MM"}),
        help_text=None,
    )
    service = forms.MultipleChoiceField(
        label="Services (none: all)",
        required=False,
        error_messages={"invalid_choice": "unknown service: %(value)s"},
    )
    format = forms.ChoiceField(
        required=False,
        choices=[("", "page"), ("csv", "CSV"), ("json", "JSON")],
        error_messages={"invalid_choice": "format must be csv or json (or none for the page), got %(value)s"},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = list(Service.objects.order_by("name").values_list("name", flat=True))
        self.fields["service"].choices = [(n, n) for n in names]
        self.fields["service"].widget.attrs["size"] = min(max(len(names), 2), 8)

    def clean_month(self) -> str:
        try:
            self.cleaned_data["period"] = sla.month_period(self.cleaned_data["month"])
        except sla.SlaError as exc:
            raise forms.ValidationError(str(exc)) from None
        return self.cleaned_data["month"]


@require_GET
@staff_required
def sla_report(request: HttpRequest) -> HttpResponse:
    data = request.GET.copy()
    if not data.get("month"):
        data["month"] = sla.previous_month()  # the last complete month, unless one is picked
    form = SlaForm(data)
    if not form.is_valid():
        return render(request, "dashboard/sla.html", {"form": form}, status=400)
    report = sla.build(form.cleaned_data["period"], form.cleaned_data["service"])
    fmt = form.cleaned_data["format"]
    if fmt:
        response = HttpResponse(report.render(fmt), content_type=DOWNLOADS[fmt])
        response["Content-Disposition"] = f'attachment; filename="sla-{report.period.label}.{fmt}"'
        return response
    links = {}
    for key in DOWNLOADS:
        query = data.copy()
        query["format"] = key
        links[key] = "?" + query.urlencode()
    context = {"form": form, "report": report, "rows": [s.as_dict() for s in report.services], "links": links}
    return render(request, "dashboard/sla.html", context)
