"""Notifications: the outbox delivered through apprise to a real loopback webhook (`json://`)."""

from __future__ import annotations

import json
from datetime import timedelta

import apprise
import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from configfile.config import export_text, import_text
from core.models import SchedulerHeartbeat
from core.spec import ConfigError
from dispatch import tasks
from health.models import Event, Incident
from health.runner import run_round
from notify import outbox as notify
from notify.models import Channel, Delivery
from tests.factories import ServiceFactory
from tests.servers import Reply

pytestmark = pytest.mark.django_db
SECRET = "hook-s3cr3t-token-4711"


@pytest.fixture(autouse=True)
def _settings(settings, monkeypatch):
    settings.AUTO_RECOVERY_ENABLED = False
    settings.NOTIFY_RETRY_SECONDS = 0
    settings.NOTIFY_MAX_ATTEMPTS = 3
    monkeypatch.setenv("HOOK_TOKEN", SECRET)


def hook_channel(server, name: str = "ops", **kw) -> Channel:
    return Channel.objects.create(name=name, url=f"json://127.0.0.1:{server.port}/hook/${{HOOK_TOKEN}}", **kw)


def hook_messages(server) -> list[dict]:
    return [json.loads(r["body"]) for r in server.requests if r["path"].startswith("/hook/")]


def web_service(server, **kw):
    return ServiceFactory(name=kw.pop("name", "web"), kind="http", settings={"url": server.url + "/svc"}, **kw)


def probe(service, server, status: int) -> None:
    server.routes["/svc"] = Reply(status=status)
    service.refresh_from_db()
    run_round([service])
    notify.process_outbox()


def test_it_sends_one_opened_and_one_resolved_message_for_an_outage(http_server):
    hook_channel(http_server)
    service = web_service(http_server, failure_threshold=2)
    probe(service, http_server, 500)
    assert hook_messages(http_server) == []  # SOFT down: no alert
    probe(service, http_server, 500)  # HARD down: the incident opens
    probe(service, http_server, 500)  # still down: nothing new
    probe(service, http_server, 500)
    messages = hook_messages(http_server)
    assert len(messages) == 1
    assert messages[0]["title"] == "web is down"
    assert messages[0]["type"] == "failure"
    assert "HTTP 500" in messages[0]["message"]
    probe(service, http_server, 200)
    probe(service, http_server, 200)
    messages = hook_messages(http_server)
    assert [m["type"] for m in messages] == ["failure", "success"]
    assert messages[1]["title"] == "web is up again"
    # The secret is in the path the webhook saw, and nowhere in what the portal stored.
    assert all(SECRET in r["path"] for r in http_server.requests if r["path"].startswith("/hook/"))
    assert Delivery.objects.filter(status="sent").count() == 2
    assert not Delivery.objects.filter(error__contains=SECRET).exists()


def test_it_filters_channels_by_event_kind_and_service(make_http_server):
    server = make_http_server()
    only_resolved = hook_channel(server, "resolved-only", events=["incident_resolved"])
    other = ServiceFactory(name="other")
    only_other = hook_channel(server, "other-only")
    only_other.services.set([other])
    service = ServiceFactory(name="web")
    Event.emit(Event.Kind.INCIDENT_OPENED, "web is down", service=service)
    Event.emit(Event.Kind.INCIDENT_RESOLVED, "web is up again", service=service)
    Event.emit(Event.Kind.INCIDENT_OPENED, "other is down", service=other)
    notify.process_outbox()
    got = {(d.channel.name, d.event.title) for d in Delivery.objects.select_related("channel", "event")}
    assert got == {("resolved-only", "web is up again"), ("other-only", "other is down")}
    assert sorted(m["title"] for m in hook_messages(server)) == ["other is down", "web is up again"]
    assert only_resolved.deliveries.get().status == "sent"
    assert Event.objects.filter(processed_at__isnull=True).count() == 0
    notify.process_outbox()  # processed once: a second pass sends nothing again
    assert len(hook_messages(server)) == 2


def test_it_retries_a_failing_delivery_then_records_the_failure(http_server):
    http_server.reply = Reply(status=500, body="boom")
    channel = hook_channel(http_server)
    Event.emit(Event.Kind.BREAKER_OPENED, "database circuit breaker opened", subject="database")
    notify.fan_out()
    for _ in range(5):
        notify.send_due(timezone.now() + timedelta(seconds=1))
    delivery = channel.deliveries.get()
    assert len(hook_messages(http_server)) == 3  # NOTIFY_MAX_ATTEMPTS, then no more
    assert delivery.status == "failed"
    assert delivery.attempts == 3
    assert "500" in delivery.error
    assert SECRET not in delivery.error


def test_it_backs_off_between_attempts_and_succeeds_later(http_server, settings):
    settings.NOTIFY_RETRY_SECONDS = 30
    http_server.reply = Reply(status=503)
    channel = hook_channel(http_server)
    Event.emit(Event.Kind.TUNNEL_RESTARTED, "tunnel main restarted", subject="main")
    now = timezone.now()
    notify.fan_out(now)
    assert notify.send_due(now) == (0, 1)
    delivery = channel.deliveries.get()
    assert delivery.status == "pending"
    assert delivery.next_attempt_at >= now + timedelta(seconds=30)
    assert notify.send_due(now + timedelta(seconds=10)) == (0, 0)  # not yet due
    http_server.reply = Reply(status=200)
    assert notify.send_due(now + timedelta(seconds=120)) == (1, 0)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 2, "")
    assert [m["type"] for m in hook_messages(http_server)] == ["warning", "warning"]


def test_it_records_a_missing_variable_without_sending(http_server, monkeypatch):
    monkeypatch.delenv("HOOK_TOKEN")
    channel = hook_channel(http_server)
    Event.emit(Event.Kind.TEST, "hello", subject="ops")
    notify.fan_out()
    for _ in range(3):
        notify.send_due(timezone.now() + timedelta(seconds=1))
    delivery = channel.deliveries.get()
    assert delivery.status == "failed"
    assert "HOOK_TOKEN is not set" in delivery.error
    assert http_server.requests == []


def test_it_reminds_while_an_incident_stays_open_and_unacknowledged(http_server, django_user_model):
    hook_channel(http_server)
    service = ServiceFactory(name="web", status="down", remind_every=600)
    opened = timezone.now() - timedelta(seconds=30)
    incident = Incident.objects.create(service=service, opened_at=opened, cause="connection refused")
    assert notify.remind(opened + timedelta(seconds=599)) == 0
    assert notify.remind(opened + timedelta(seconds=601)) == 1
    notify.fan_out()
    notify.send_due(timezone.now())
    assert notify.remind(opened + timedelta(seconds=700)) == 0  # the last reminder was 99 s before
    assert notify.remind(opened + timedelta(seconds=1202)) == 1
    notify.fan_out()
    notify.send_due(timezone.now())
    messages = hook_messages(http_server)
    assert len(messages) == 2
    assert messages[0]["title"].startswith("web is still down")
    assert messages[0]["type"] == "warning"
    incident.acknowledge(django_user_model.objects.create_user("ann"))
    assert notify.remind(timezone.now() + timedelta(days=1)) == 0


def test_it_uses_a_channels_remind_every_when_the_service_has_none(http_server):
    hook_channel(http_server, remind_every=300)
    quiet = hook_channel(http_server, "quiet")
    service = ServiceFactory(name="web", status="down")
    opened = timezone.now()
    Incident.objects.create(service=service, opened_at=opened)
    assert notify.remind(opened + timedelta(seconds=301)) == 1
    notify.fan_out()
    assert not quiet.deliveries.exists()  # reminders follow each channel's own setting


def test_it_emits_scheduler_late_once_per_late_streak(http_server):
    hook_channel(http_server)
    now = timezone.now()
    SchedulerHeartbeat.objects.create(name="dispatcher", last_run_at=now - timedelta(minutes=10))
    tasks.notify(now)
    tasks.notify(now)
    assert Event.objects.filter(kind="scheduler_late").count() == 1
    assert [m["type"] for m in hook_messages(http_server)] == ["warning"]


def admin_action(client, channel: Channel) -> list[str]:
    """Run the admin's "Send test notification" on a channel; the messages it left for the user."""
    answer = client.post(
        "/admin/notify/channel/",
        {"action": "send_test_notification", "_selected_action": [channel.pk], "index": 0},
    )
    assert answer.status_code == 302
    return [str(m) for m in get_messages(answer.wsgi_request)]


def test_it_sends_a_test_notification_from_the_admin(http_server, admin_client):
    channel = hook_channel(http_server)
    assert admin_action(admin_client, channel) == ["ops: test notification sent"]
    messages = hook_messages(http_server)
    assert len(messages) == 1
    assert messages[0]["title"] == "Test notification from opsportal to ops"
    assert messages[0]["type"] == "info"
    assert channel.deliveries.get().status == "sent"


def test_it_shows_the_failure_of_a_test_notification_without_the_secret(http_server, admin_client):
    http_server.reply = Reply(status=401)
    channel = hook_channel(http_server)
    (shown,) = admin_action(admin_client, channel)
    assert shown.startswith("ops: sending failed")
    assert SECRET not in shown
    listing = admin_client.get("/admin/notify/delivery/").content.decode()
    assert "ops" in listing and SECRET not in listing


def test_it_masks_a_literal_secret_in_the_channel_list(admin_client):
    Channel.objects.create(name="literal", url=f"json://user:{SECRET}@127.0.0.1:9/x")
    page = admin_client.get("/admin/notify/channel/").content.decode()
    assert "literal" in page
    assert SECRET not in page


def test_it_imports_and_exports_channel_tables():
    ServiceFactory(name="web")
    text = """
[[channel]]
name = "slack"
url = "slack://${SLACK_TOKEN}"
events = ["incident_opened", "incident_resolved"]
services = ["web"]
remind_every = 3600
"""
    report = import_text(text)
    assert report.channels.created == ["slack"]
    channel = Channel.objects.get()
    assert (channel.url, channel.events, channel.remind_every) == (
        "slack://${SLACK_TOKEN}",
        ["incident_opened", "incident_resolved"],
        3600,
    )
    assert [s.name for s in channel.services.all()] == ["web"]
    exported = export_text()
    assert 'url = "slack://${SLACK_TOKEN}"' in exported
    assert import_text(exported).channels.unchanged == ["slack"]


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('name = "x"', "channel[0].url: is required"),
        ('name = "x"\nurl = "json://h"\nevents = ["nope"]', "channel[0].events: unknown event 'nope'"),
        ('name = "x"\nurl = "json://h"\nservices = ["ghost"]', "channel[0].services: unknown service 'ghost'"),
        ('name = "x"\nurl = "json://h"\nremind_every = -1', "channel[0].remind_every: must be at least 0"),
        ('name = "x"\nurl = "json://h"\ncolour = "red"', "channel[0].colour: unknown key"),
    ],
)
def test_it_refuses_a_bad_channel_table_and_changes_nothing(table, error):
    with pytest.raises(ConfigError) as exc:
        import_text(f"[[channel]]\n{table}\n")
    assert str(exc.value).startswith(error)
    assert not Channel.objects.exists()


# --- issue 15 item 12: an incident whose opening went out gets its resolution out too -------------
def flap_at_first_change(settings) -> None:
    # One change in a history of three is 6.25 %: the recovering probe itself starts the flapping.
    settings.FLAP_HIGH_THRESHOLD = 4.0
    settings.FLAP_LOW_THRESHOLD = 0.0


def test_it_sends_the_resolution_of_a_delivered_opening_while_the_service_flaps(http_server, settings):
    flap_at_first_change(settings)
    channel = hook_channel(http_server)
    service = web_service(http_server, failure_threshold=2)
    probe(service, http_server, 500)
    probe(service, http_server, 500)  # HARD down: the opening is delivered
    assert [m["title"] for m in hook_messages(http_server)] == ["web is down"]
    probe(service, http_server, 200)  # recovers, and is flapping at that moment
    service.refresh_from_db()
    assert service.flapping and service.status == "up"
    titles = [m["title"] for m in hook_messages(http_server)]
    assert "web is up again" in titles  # the pager's incident is closed
    resolved = channel.deliveries.get(event__kind="incident_resolved")
    assert (resolved.status, resolved.error) == ("sent", "")


def test_it_holds_the_resolution_where_the_opening_was_held_or_never_sent(make_http_server, settings):
    flap_at_first_change(settings)
    server = make_http_server()
    hook_channel(server)
    service = web_service(server, failure_threshold=2)
    probe(service, server, 500)
    probe(service, server, 500)
    late = hook_channel(server, "late")  # added after the opening: it never heard of the incident
    probe(service, server, 200)
    assert late.deliveries.get(event__kind="incident_resolved").status == "held"
    assert [m["title"] for m in hook_messages(server)].count("web is up again") == 1


def test_it_sends_a_resolution_after_its_opening_that_is_still_being_retried(http_server, settings):
    flap_at_first_change(settings)
    settings.NOTIFY_RETRY_SECONDS = 60
    channel = hook_channel(http_server)
    service = web_service(http_server, failure_threshold=1)
    http_server.routes["/hook/" + SECRET] = Reply(status=503)  # the webhook is down at the opening
    probe(service, http_server, 500)
    opened = channel.deliveries.get(event__kind="incident_opened")
    assert opened.status == "pending"
    probe(service, http_server, 200)
    resolved = channel.deliveries.get(event__kind="incident_resolved")
    assert resolved.status == "pending"
    # Never before its opening: a pager that got "resolved" first would keep the late "opened" open.
    opened.refresh_from_db()
    assert resolved.next_attempt_at >= opened.next_attempt_at
    del http_server.routes["/hook/" + SECRET]
    notify.send_due(timezone.now() + timedelta(seconds=600))
    titles = [m["title"] for m in hook_messages(http_server) if m["title"] != "web is flapping"]
    assert titles == ["web is down", "web is down", "web is up again"]  # the failed try, the retry, then the end


def test_it_holds_a_resolution_while_its_opening_failed_again_and_waits_longer(make_http_server, settings):
    flap_at_first_change(settings)
    settings.NOTIFY_RETRY_SECONDS = 60
    svc, hook = make_http_server(), make_http_server()
    received: list[str] = []

    def webhook(request):
        title = json.loads(request["body"])["title"]
        if title == "web is down" and "(webhook back)" not in received:  # the openings fail till then
            return Reply(status=503)
        received.append(title)
        return Reply(status=200)

    hook.handler = webhook
    channel = hook_channel(hook)
    service = web_service(svc, failure_threshold=1)
    probe(service, svc, 500)  # the opening fails: retried in 60 s
    probe(service, svc, 200)  # the resolution is due at that retry
    opened = channel.deliveries.get(event__kind="incident_opened")
    resolved = channel.deliveries.get(event__kind="incident_resolved")
    assert opened.status == resolved.status == "pending" and resolved.next_attempt_at >= opened.next_attempt_at

    notify.send_due(timezone.now() + timedelta(seconds=61))  # the retry fails too: 120 s more
    opened.refresh_from_db()
    resolved.refresh_from_db()
    assert (opened.status, opened.attempts) == ("pending", 2)
    assert "web is up again" not in received  # a pager told "resolved" first would keep the late "opened" open
    assert (resolved.status, resolved.attempts) == ("pending", 0)
    assert resolved.next_attempt_at >= opened.next_attempt_at  # it waits for the opening's next try

    received.append("(webhook back)")
    notify.send_due(timezone.now() + timedelta(seconds=600))
    assert [t for t in received if t != "web is flapping"] == ["(webhook back)", "web is down", "web is up again"]
    assert set(channel.deliveries.values_list("status", flat=True)) == {"sent"}


def test_it_resolves_a_parents_delivered_opening_and_keeps_its_unannounced_child_quiet(http_server, settings):
    flap_at_first_change(settings)
    channel = hook_channel(http_server)
    parent = ServiceFactory(name="db", kind="http", settings={"url": http_server.url + "/db"}, failure_threshold=1)
    child = web_service(http_server, failure_threshold=1)
    child.depends_on.set([parent])

    def both(code: int) -> None:
        http_server.routes["/db"] = http_server.routes["/svc"] = Reply(status=code)
        run_round([type(parent).objects.get(pk=parent.pk), type(child).objects.get(pk=child.pk)])
        notify.process_outbox()

    both(500)  # both HARD down: the parent's incident is announced, the child's is its parent's
    both(200)  # both recover, both flapping at that moment
    titles = [m["title"] for m in hook_messages(http_server)]
    assert titles.count("db is down") == 1 and titles.count("db is up again") == 1
    assert "web is down" not in titles and "web is up again" not in titles
    statuses = {d.event.title: d.status for d in channel.deliveries.select_related("event")}
    assert statuses["web is up again"] == "held"


def test_it_sends_every_event_kind_with_its_own_apprise_type() -> None:
    """Every kind has its type: a misconfiguration warns, a dropped spool is a failure (never the INFO fallback)."""
    assert set(notify.NOTIFY_TYPES) == set(Event.Kind)
    assert notify.NOTIFY_TYPES[Event.Kind.SERVICE_MISCONFIGURED] == apprise.NotifyType.WARNING
    assert notify.NOTIFY_TYPES[Event.Kind.SPOOL_DROPPED] == apprise.NotifyType.FAILURE
