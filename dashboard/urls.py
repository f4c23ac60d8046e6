"""The staff dashboard's URLs, included at the site root."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from dashboard import incident_forms, incident_page, services_list, sla
from dashboard import views as dashboard

app_name = "dashboard"

urlpatterns = [
    path("", dashboard.overview, name="overview"),
    path("live/overview/", dashboard.overview_live, name="overview-live"),
    path("incidents/", dashboard.incidents, name="incidents"),
    path("incidents/<int:pk>/", incident_page.incident, name="incident"),
    path("incidents/<int:pk>/acknowledge/", dashboard.incident_ack, name="incident-ack"),
    path("incidents/<int:pk>/update/", incident_forms.incident_update, name="incident-update"),
    path("incidents/<int:pk>/postmortem/", incident_forms.incident_postmortem, name="incident-postmortem"),
    path("incidents/<int:pk>/close/", incident_forms.incident_close, name="incident-close"),
    path("recovery/", dashboard.recovery_history, name="recovery"),
    path("reports/sla/", sla.sla_report, name="sla"),
    path("services/", services_list.services_list, name="services"),
    path("services/<slug:name>/", dashboard.service_detail, name="service"),
    path("services/<slug:name>/live/", dashboard.service_live, name="service-live"),
    path("services/<slug:name>/probe/", dashboard.service_probe, name="service-probe"),
    path("services/<slug:name>/recover/", dashboard.service_recover, name="service-recover"),
    path("services/<slug:name>/pause/", dashboard.service_pause, name="service-pause"),
    path("services/<slug:name>/declare/", incident_forms.service_declare, name="service-declare"),
]

# Admin ↔ dashboard: the admin's header names the portal and "View site" opens the dashboard.
admin.site.site_header = "opsportal administration"
admin.site.site_title = "opsportal admin"
admin.site.site_url = "/"
