"""The services list (/services/): one dense row per service, for hundreds of them where cards are too many.

Search, a filter by state and by tag, a sort and a page of PAGE_SIZE rows, in a constant number of
queries: the page's services, their 24 h uptime (health.rollups.tallies, as the overview's cards) and
the last BEATS results of every service on the page in one window-function query.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.paginator import Paginator
from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from dashboard.reports import CARD_ORDER
from dashboard.views import PAGE_SIZE, _bad_request, staff_required
from health.models import PAUSED, UNKNOWN, ProbeResult, Service
from health.probes.base import DEGRADED, DOWN, MISCONFIGURED, UP
from health.rollups import tallies
from health.spec import TAG, TAG_RULE, has_tag

UTC = dt.UTC
# Squares in a row's heartbeat bar: the service's last results, newest on the right (as Uptime Kuma).
BEATS = 50
# How far back the squares look: BEATS intervals, times this slack (late rounds, retries), at least an hour.
BEAT_SPAN = 3
MIN_BEAT_SPAN = dt.timedelta(hours=1)
STATES = (UP, DEGRADED, DOWN, UNKNOWN, PAUSED, MISCONFIGURED)
SORTS = {
    "state": "state, problems first",
    "name": "name, A–Z",
    "-name": "name, Z–A",
    "latency": "latency, slowest first",
    "uptime": "uptime 24 h, lowest first",
}
DEFAULT_SORT = "state"
# A square's height as a share of the bar, so a state reads without its colour too (as dashboard.svg's bar).
_HEIGHTS = {DOWN: 1.0, DEGRADED: 0.75, UP: 0.55, MISCONFIGURED: 0.48, "none": 0.3}
# What counts as paused on the dashboard (Card.state): disabled, paused by hand, or in a maintenance window.
_PAUSED = Q(enabled=False) | Q(paused=True) | Q(in_maintenance=True) | Q(status=PAUSED)


class ServiceListFilter(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search")
    state = forms.ChoiceField(required=False, choices=[("", "any"), *((s, s) for s in STATES)])
    tag = forms.CharField(required=False, max_length=50)
    sort = forms.ChoiceField(required=False, choices=list(SORTS.items()))

    def clean_tag(self) -> str:
        tag = self.cleaned_data["tag"]
        if tag and not TAG.fullmatch(tag):
            raise forms.ValidationError(TAG_RULE)
        return tag

    def clean_sort(self) -> str:
        return self.cleaned_data["sort"] or DEFAULT_SORT

    def queryset(self) -> QuerySet[Service]:
        data = self.cleaned_data
        qs = Service.objects.all()
        if data["q"]:
            qs = qs.filter(Q(name__icontains=data["q"]) | Q(description__icontains=data["q"]))
        state = data["state"]
        if state == PAUSED:
            qs = qs.filter(_PAUSED)
        elif state:
            qs = qs.filter(status=state).exclude(_PAUSED)
        if data["tag"]:
            qs = qs.filter(has_tag(data["tag"]))
        return qs


@dataclass
class Beat:
    checked_at: dt.datetime
    status: str
    maintenance: bool
    latency_ms: float | None


@dataclass
class Row:
    service: Service
    uptime: float | None
    beats: list[Beat] = field(default_factory=list)

    @property
    def state(self) -> str:
        return PAUSED if self.service.is_paused else self.service.status

    @property
    def latency(self) -> str:
        return duration(self.service.last_latency_ms)

    @property
    def beats_svg(self) -> SafeString:
        return heartbeat_bar(self.beats, label=f"{self.service.name}: last {len(self.beats)} results")


def duration(ms: float | None) -> str:
    """A latency as a person reads it: "23 ms", "1.5 s"; "—" when nothing was measured."""
    if ms is None:
        return "—"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def heartbeat_bar(beats: list[Beat], *, label: str, slots: int = BEATS, height: int = 14) -> SafeString:
    """One square per result, oldest left, newest right, empty slots on the left; each with a tooltip
    (ISO time with its zone, status, latency); the colour comes from the stylesheet's `.seg-<state>` classes.

    Plain string building (2,500 squares a page): Django's lazy-aware escape() there cost more than the
    page's queries, so each state's markup is escaped once and the rest of a tooltip is digits and words."""
    step = 5
    pad = max(slots - len(beats), 0)
    opening = functools.partial(_opening, height=height)
    parts = [f'{opening("none")} x="{i * step}"><title>no result</title></rect>' for i in range(pad)]
    counts: dict[str, int] = {}
    for i, beat in enumerate(beats[-slots:], start=pad):
        counts[beat.status] = counts.get(beat.status, 0) + 1
        when = beat.checked_at.astimezone(UTC).isoformat(sep=" ", timespec="seconds")
        title = f"{when} · {html.escape(beat.status)}"
        if beat.latency_ms is not None:
            title += f" · {duration(beat.latency_ms)}"
        if beat.maintenance:
            title += " · in maintenance"
        parts.append(f'{opening(beat.status)} x="{i * step}"><title>{title}</title></rect>')
    summary = f"{label}: " + (", ".join(f"{n} {s}" for s, n in counts.items()) if counts else "none yet")
    return mark_safe(
        f'<svg class="beats" viewBox="0 0 {slots * step} {height}" width="{slots * step}" height="{height}" '
        f'role="img" aria-label="{html.escape(summary)}">{"".join(parts)}</svg>'
    )


@functools.cache
def _opening(state: str, height: int) -> str:
    """A square's start tag but its x, by state: the height says the state without colour too."""
    h = height * _HEIGHTS.get(state, 0.3)
    return f'<rect class="seg seg-{html.escape(state)}" y="{height - h:.1f}" width="4" height="{h:.1f}"'


def last_results(services: list[Service], now: dt.datetime, per_service: int = BEATS) -> dict[int, list[Beat]]:
    """The last `per_service` results of each service, oldest first: ONE query for all of them
    (ROW_NUMBER() over a partition by service, which SQLite >= 3.25 and PostgreSQL both have).

    The window only ranks the results of the last BEAT_SPAN intervals of each service, so the query reads
    a few hundred rows a service, not the whole raw retention (7 days at 1 a minute: 10,000); a service
    probed far less often than its interval (a portal stopped for hours) shows the squares it has."""
    out: dict[int, list[Beat]] = {s.pk: [] for s in services}
    if not services:
        return out
    by_interval: dict[int, list[int]] = {}
    for s in services:
        by_interval.setdefault(s.interval, []).append(s.pk)
    recent = Q()
    for interval, ids in by_interval.items():
        span = max(dt.timedelta(seconds=interval * per_service * BEAT_SPAN), MIN_BEAT_SPAN)
        recent |= Q(service_id__in=ids, checked_at__gte=now - span)
    ranked = (
        ProbeResult.objects.filter(recent)
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("service_id")], order_by=[F("checked_at").desc(), F("id").desc()])
        )
        .filter(rank__lte=per_service)
        .order_by()
        .values_list("service_id", "rank", "checked_at", "status", "maintenance", "latency_ms")
    )
    for sid, _rank, *beat in sorted(ranked, key=lambda r: (r[0], -r[1])):
        out[sid].append(Beat(*beat))
    return out


def _state_rank() -> Case:
    """The dashboard's card order (problems first) as SQL, so the database sorts and pages."""
    whens = [When(_PAUSED, then=Value(CARD_ORDER["paused"]))]
    whens += [When(status=s, then=Value(n)) for s, n in CARD_ORDER.items() if s != "paused"]
    return Case(*whens, default=Value(len(CARD_ORDER)), output_field=IntegerField())


def rows(form: ServiceListFilter, page_number: Any, now: dt.datetime | None = None) -> tuple[Any, list[Row]]:
    """The page (a Paginator page) and its rows, in a constant number of queries."""
    now = now or timezone.now()
    qs, sort = form.queryset(), form.cleaned_data["sort"]
    window = (now - dt.timedelta(hours=24), now + dt.timedelta(microseconds=1))
    uptimes: dict[int, float | None] = {}
    if sort == "uptime":
        # Sorted by a figure computed over every matching service: two aggregate queries, then a page of ids.
        ids = list(qs.order_by("name").values_list("pk", flat=True))
        uptimes = {sid: t.uptime for sid, t in tallies(ids, *window).items()}
        ids.sort(key=lambda sid: (uptimes[sid] is None, uptimes[sid] or 0.0))
        page = Paginator(ids, PAGE_SIZE).get_page(page_number)
        by_id = Service.objects.in_bulk(list(page.object_list))
        services = [by_id[sid] for sid in page.object_list]
    else:
        order: dict[str, list[Any]] = {
            "state": [_state_rank(), "name"],
            "name": ["name"],
            "-name": ["-name"],
            "latency": [F("last_latency_ms").desc(nulls_last=True), "name"],
        }
        page = Paginator(qs.order_by(*order[sort]), PAGE_SIZE).get_page(page_number)
        services = list(page.object_list)
        uptimes = {sid: t.uptime for sid, t in tallies([s.pk for s in services], *window).items()}
    beats = last_results(services, now)
    return page, [Row(s, uptimes.get(s.pk), beats[s.pk]) for s in services]


@require_GET
@staff_required
def services_list(request: HttpRequest) -> HttpResponse:
    form = ServiceListFilter(request.GET)
    if not form.is_valid():
        errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return _bad_request(request, f"Bad filter: {errors}")
    page, page_rows = rows(form, request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    unsorted = query.copy()
    unsorted.pop("sort", None)
    context = {
        "form": form,
        "page": page,
        "rows": page_rows,
        "query": query.urlencode(),
        "unsorted": unsorted.urlencode(),
        "sort": form.cleaned_data["sort"],
        "sort_label": SORTS[form.cleaned_data["sort"]],
        "beats": BEATS,
    }
    return render(request, "dashboard/services_list.html", context)
