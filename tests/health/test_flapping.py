"""Flap detection: Nagios' weighted state change over 21 results, start above 20 %, stop below 5 %."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from health.flapping import percent_state_change
from health.models import Event, Service
from health.runner import run_round
from notify import outbox as notify
from notify.models import Channel
from tests.factories import ServiceFactory
from tests.servers import Reply

pytestmark = pytest.mark.django_db


def test_it_weighs_recent_changes_more_than_old_ones():
    assert percent_state_change("u" * 21) == 0.0
    assert percent_state_change("ud" * 10 + "u") == pytest.approx(100.0)
    # One change: 0.75 at the oldest end, 1.25 at the newest, divided by 20 changes.
    assert percent_state_change("d" + "u" * 20) == pytest.approx(3.75)
    assert percent_state_change("u" * 20 + "d") == pytest.approx(6.25)
    # A short history is aligned to the newest end.
    assert percent_state_change("ud") == pytest.approx(6.25)


def test_it_reads_the_thresholds_from_settings(settings):
    settings.FLAP_HIGH_THRESHOLD = 60.0
    service = ServiceFactory(name="web")
    from health.flapping import note

    for status in ["up", "down"] * 5:
        note(service, status)
    assert 40 < service.flap_percent < 60  # well above the default 20 %
    assert service.flapping is False


@pytest.mark.slow("probe rounds enough to start and stop flapping")
def test_it_starts_and_stops_flapping_and_sends_one_notice(http_server, settings):
    settings.AUTO_RECOVERY_ENABLED = False
    settings.NOTIFY_RETRY_SECONDS = 0
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    service = ServiceFactory(name="web", kind="http", settings={"url": http_server.url + "/svc"}, failure_threshold=1)
    # The crafted sequence: steady, then alternating, then steady for 21 results.
    sequence = [200] * 3 + [500, 200] * 6 + [200] * 21
    percents, flags = [], []
    for code in sequence:
        http_server.routes["/svc"] = Reply(status=code)
        service = Service.objects.get(pk=service.pk)
        run_round([service])
        notify.process_outbox()
        service.refresh_from_db()
        percents.append(service.flap_percent)
        flags.append(service.flapping)
    started = flags.index(True)
    stopped = started + flags[started:].index(False)
    assert percents[started] > 20 >= percents[started - 1]
    assert percents[stopped] < 5 <= percents[stopped - 1]
    assert all(flags[started:stopped]) and not any(flags[stopped:])
    assert service.status_dict()["flapping"] is False
    assert Event.objects.filter(kind="flapping_started").count() == 1
    assert Event.objects.filter(kind="flapping_stopped").count() == 1

    messages = [json.loads(r["body"]) for r in http_server.requests if r["path"] == "/hook"]
    titles = [m["title"] for m in messages]
    assert titles.count("web is flapping") == 1
    flap_at = titles.index("web is flapping")
    stop_at = next(i for i, t in enumerate(titles) if t.startswith("web stopped flapping"))
    # Between the two notices nothing about web went out: its incidents were held.
    assert stop_at == flap_at + 1
    assert all(t in ("web is down", "web is up again") for t in titles[:flap_at])
    assert titles[stop_at + 1 :] == []
    held = notify.Delivery.objects.filter(status="held")
    assert held.exists() and all(d.error == "held: flapping" for d in held)


def test_it_shows_flapping_in_the_status_api(client):
    ServiceFactory(name="web", status="up", flapping=True, flap_percent=31.5, last_checked_at=timezone.now())
    body = client.get("/health/status").json()
    assert body["services"]["web"]["flapping"] is True
