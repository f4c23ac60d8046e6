"""Heartbeat ping endpoints (api.ping): Healthchecks-style URLs over real HTTP requests through Django."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from core.spool import default_spool, replay_pending
from health.models import PING_BODY_MAX, Ping, Service
from health.probes.base import DOWN, UP
from health.probes.push import PushProbe
from tests.core.outage_support import quick_db_hardening
from tests.factories import make_service

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def push_service(name: str = "backup") -> Service:
    return make_service(name, kind="push", settings={"period": 3600, "grace": 60})


def kinds(service: Service) -> list[tuple[str, int | None]]:
    return list(service.pings.order_by("received_at", "pk").values_list("kind", "exit_status"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("suffix", "kind", "exit_status"),
    [
        ("", "success", None),
        ("/start", "start", None),
        ("/fail", "fail", None),
        ("/log", "log", None),
        ("/0", "success", 0),
        ("/3", "fail", 3),
        ("/255", "fail", 255),
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "head"])
def test_it_answers_each_url_form_as_documented(client: Client, suffix: str, kind: str, exit_status: Any, method):
    service = push_service()
    response = getattr(client, method)(f"/ping/{service.ping_uuid}{suffix}", HTTP_USER_AGENT="curl/8.5")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    if method != "head":
        assert response.content == b"OK"
    assert kinds(service) == [(kind, exit_status)]
    row = service.pings.get()
    assert (row.user_agent, row.remote_addr) == ("curl/8.5", "127.0.0.1")


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_uuid_and_400_past_exit_status_255(client: Client):
    service = push_service()
    unknown = client.get(f"/ping/{uuid.uuid4()}")
    assert (unknown.status_code, unknown.content) == (404, b"not found")
    too_big = client.get(f"/ping/{service.ping_uuid}/256")
    assert too_big.status_code == 400
    assert client.get(f"/ping/{service.ping_uuid}/nope").status_code == 404  # not a route
    assert client.put(f"/ping/{service.ping_uuid}").status_code == 405
    assert not Ping.objects.exists()


@pytest.mark.django_db
def test_it_keeps_the_first_100_kb_of_a_bigger_body(client: Client):
    service = push_service()
    body = ("<b>log line</b>\n" * 8000).encode()  # 128 KB
    assert len(body) > PING_BODY_MAX == 100 * 1024
    response = client.post(f"/ping/{service.ping_uuid}/log", data=body, content_type="text/plain")
    assert response.status_code == 200
    kept = service.pings.get().body
    assert len(kept.encode()) == PING_BODY_MAX
    assert body.decode().startswith(kept)


@pytest.mark.django_db
def test_it_scrubs_credentials_and_the_portals_secrets_from_a_body(client: Client, settings):
    settings.PING_KEY = "ping-key-0123456789abcdef"
    service = push_service()
    body = (
        "backup to postgres://backup:hunter2hunter2@db.internal/prod done\n"
        "curl https://api.example/?token=abc123secret\n"
        f"key {settings.PING_KEY} and {settings.SECRET_KEY}\n"
    )
    client.post(f"/ping/{service.ping_uuid}", data=body, content_type="text/plain")
    kept = service.pings.get().body
    for secret in ("hunter2hunter2", "abc123secret", settings.PING_KEY, settings.SECRET_KEY):
        assert secret not in kept
    assert "backup to postgres://" in kept and "done" in kept


@pytest.mark.django_db
def test_it_quotes_the_deciding_pings_body_in_the_detail(client: Client):
    service = push_service()
    client.post(f"/ping/{service.ping_uuid}/3", data="disk full\n  on /var", content_type="text/plain")
    outcome = PushProbe(service.settings, timeout=5, service_name=service.name).run()
    assert outcome.status == DOWN
    assert outcome.detail.startswith("job reported failure (exit 3) at ")
    assert outcome.detail.endswith('; said "disk full on /var"')


@pytest.mark.django_db
def test_it_books_a_check_now_when_a_ping_turns_the_verdict(client: Client):
    service = push_service()
    later = T0 + dt.timedelta(hours=1)
    Service.objects.filter(pk=service.pk).update(status=UP, next_due_at=later)
    with time_machine.travel(T0, tick=False):
        client.get(f"/ping/{service.ping_uuid}")  # a success while up: nothing to turn
        assert Service.objects.get(pk=service.pk).next_due_at == later
        client.get(f"/ping/{service.ping_uuid}/fail")  # a failure while up: judged now
        assert Service.objects.get(pk=service.pk).next_due_at == T0
    Service.objects.filter(pk=service.pk).update(status=DOWN, next_due_at=later)
    with time_machine.travel(T0 + dt.timedelta(seconds=5), tick=False):
        client.get(f"/ping/{service.ping_uuid}/log")  # a log says nothing of the state
        assert Service.objects.get(pk=service.pk).next_due_at == later
        client.get(f"/ping/{service.ping_uuid}/0")  # a success while down: judged now
        assert Service.objects.get(pk=service.pk).next_due_at == T0 + dt.timedelta(seconds=5)


@pytest.mark.django_db
def test_it_answers_429_past_five_pings_a_second_for_one_uuid(client: Client):
    service, other = push_service(), push_service("other")
    with time_machine.travel(T0, tick=False):
        answers = [client.get(f"/ping/{service.ping_uuid}").status_code for _ in range(7)]
        assert client.get(f"/ping/{other.ping_uuid}").status_code == 200  # per uuid
    assert answers == [200] * 5 + [429, 429]
    assert service.pings.count() == 5
    with time_machine.travel(T0 + dt.timedelta(seconds=1), tick=False):
        assert client.get(f"/ping/{service.ping_uuid}").status_code == 200  # the next window


@pytest.mark.django_db
def test_it_does_one_indexed_lookup_and_one_insert_a_ping(client: Client, settings):
    settings.CACHES = {**settings.CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    service = push_service()
    Service.objects.filter(pk=service.pk).update(status=UP)  # a steady job: its pings turn nothing
    for _ in range(3):
        client.get(f"/ping/{service.ping_uuid}")
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/ping/{service.ping_uuid}").status_code == 200
    statements = [q["sql"].lstrip().split()[0].upper() for q in queries]
    assert statements == ["SELECT", "INSERT"]
    assert "ping_uuid" in queries[0]["sql"]


@pytest.mark.django_db(transaction=True)
def test_it_spools_pings_during_a_database_outage_and_replays_them_with_their_arrival_times(
    client: Client, settings, outage, tmp_path
):
    settings.CACHES = {**settings.CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    service = push_service()
    with quick_db_hardening(settings, tmp_path):
        outage.start()
        times = [T0 + dt.timedelta(seconds=s) for s in (0, 10, 20)]
        for at, suffix in zip(times, ("/start", "/log", ""), strict=True):
            with time_machine.travel(at, tick=False):
                assert client.post(f"/ping/{service.ping_uuid}{suffix}", data="ran", content_type="text/plain")
                response = client.get(f"/ping/{service.ping_uuid}")  # a duplicate success, also kept
                assert (response.status_code, response.content) == (200, b"OK")
        outage.end()
        assert replay_pending() == 6
    rows = list(service.pings.order_by("pk").values_list("kind", "received_at"))
    assert rows == [
        ("start", times[0]),
        ("success", times[0]),
        ("log", times[1]),
        ("success", times[1]),
        ("success", times[2]),
        ("success", times[2]),
    ]
    # The replayed pings count: the job is on time by its last one.
    with time_machine.travel(times[2] + dt.timedelta(seconds=3600), tick=False):
        assert PushProbe(service.settings, timeout=1, service_name=service.name).run().status == UP
    with time_machine.travel(times[2] + dt.timedelta(seconds=3661), tick=False):
        assert PushProbe(service.settings, timeout=1, service_name=service.name).run().status == DOWN


KEY = "k" * 8 + "-ping-key-for-tests"


@pytest.mark.django_db
def test_it_takes_pings_by_name_with_the_ping_key(client: Client, settings):
    settings.PING_KEY = KEY
    service = push_service("nightly")
    assert client.get(f"/ping/{KEY}/nightly/start").content == b"OK"
    assert client.post(f"/ping/{KEY}/nightly/3", data="boom", content_type="text/plain").status_code == 200
    assert client.get(f"/ping/{KEY}/nightly").status_code == 200
    assert kinds(service) == [("start", None), ("fail", 3), ("success", None)]
    assert client.get(f"/ping/{KEY}/nobody").status_code == 404
    assert client.get(f"/ping/{KEY}/nightly/256").status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", KEY])
def test_it_answers_404_to_pings_by_name_without_the_right_key(client: Client, settings, key):
    settings.PING_KEY = key  # empty: pings by name are off
    service = push_service("nightly")
    assert client.get(f"/ping/{'x' * 24}/nightly").status_code == 404
    assert client.get(f"/ping/{KEY[:-1]}X/nightly").status_code == 404
    assert kinds(service) == []


@pytest.mark.django_db(transaction=True)
def test_it_spools_a_ping_by_name_during_an_outage_with_its_arrival_time(client: Client, settings, outage, tmp_path):
    settings.CACHES = {**settings.CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.PING_KEY = KEY
    service = push_service("nightly")
    with quick_db_hardening(settings, tmp_path):
        outage.start()
        with time_machine.travel(T0, tick=False):
            assert client.get(f"/ping/{KEY}/nightly").content == b"OK"
            assert client.get(f"/ping/{KEY}/nightly/fail").content == b"OK"
        outage.end()
        assert replay_pending() == 2
    assert list(service.pings.order_by("pk").values_list("kind", "received_at")) == [("success", T0), ("fail", T0)]


@pytest.mark.django_db
def test_it_resolves_a_spooled_ping_by_name_at_replay_and_drops_one_for_a_deleted_service(settings, tmp_path):
    """What ping_by_name spools when the name cannot even be read (`named_ping`): resolved when replayed."""
    settings.VAR_DIR = tmp_path
    service = push_service("nightly")
    record = {
        "received_at": T0,
        "kind": "success",
        "exit_status": None,
        "body": "",
        "remote_addr": "",
        "user_agent": "",
    }
    spool = default_spool()
    assert spool.append("named_ping", {"name": "nightly", **record})
    assert spool.append("named_ping", {"name": "deleted-meanwhile", **record})
    assert replay_pending() == 2
    assert list(service.pings.values_list("kind", "received_at")) == [("success", T0)]
    assert Ping.objects.count() == 1
