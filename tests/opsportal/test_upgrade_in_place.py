"""An existing database upgrades in place: the models that moved to core, api and notify keep their rows.

The database is migrated back to the state the last release left it in (health 0009: ApiToken,
SchedulerHeartbeat, SpoolBatch, Channel and Delivery still health's), filled through that state's models,
a permission on a moved model granted to a user, then migrated forward on today's code. Every row is then
read through the new models, and the grant still holds.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from api.models import ApiToken
from core.models import SchedulerHeartbeat, SpoolBatch
from notify.models import Channel, Delivery

# The leaves of the release before the move (the new apps had no migrations yet).
BEFORE = [
    ("health", "0009_event_spool_dropped"),
    ("recovery", "0005_owner_heartbeat"),
    ("tunnels", "0004_config_bounds"),
]
NEW_APPS = ("core", "api", "notify", "dispatch", "dashboard", "configfile")


def migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_it_keeps_every_row_of_the_moved_models_through_migrate():
    executor = migrate([*BEFORE, *((app, None) for app in NEW_APPS)])
    old = executor.loader.project_state(BEFORE).apps
    # auth and contenttypes stay at their latest (their tables are not part of the move): today's models.
    user = User.objects.create(username="ops", is_staff=True)
    service = old.get_model("health", "Service").objects.create(name="web", kind="database", settings={})
    event = old.get_model("health", "Event").objects.create(kind="incident_opened", title="web is down")
    old.get_model("health", "ApiToken").objects.create(
        user_id=user.pk, name="ci", prefix="ops_abc", token_hash="f" * 64
    )
    old.get_model("health", "SchedulerHeartbeat").objects.create(name="dispatcher", last_run_at=timezone.now())
    old.get_model("health", "SpoolBatch").objects.create(batch_id="batch-1", records=3)
    channel = old.get_model("health", "Channel").objects.create(name="ops", url="json://127.0.0.1", remind_every=60)
    channel.services.add(service)
    old.get_model("health", "Delivery").objects.create(channel=channel, event=event, status="sent", attempts=1)
    # As the release left it: the model's content type is health's (the reverse migration put it back).
    content_type = ContentType.objects.get(app_label="health", model="apitoken")
    assert not ContentType.objects.filter(app_label="api", model="apitoken").exists()
    grant = Permission.objects.get_or_create(
        content_type=content_type, codename="change_apitoken", defaults={"name": "Can change api token"}
    )[0]
    user.user_permissions.add(grant)

    migrate(executor.loader.graph.leaf_nodes())

    token = ApiToken.objects.get()
    assert (token.name, token.prefix, token.user.username) == ("ci", "ops_abc", "ops")
    assert SchedulerHeartbeat.objects.get().name == "dispatcher"
    assert SpoolBatch.objects.get().records == 3
    kept = Channel.objects.get()
    assert (kept.name, kept.remind_every, [s.name for s in kept.services.all()]) == ("ops", 60, ["web"])
    delivery = Delivery.objects.get()
    assert (delivery.channel_id, delivery.event.title, delivery.status) == (kept.pk, "web is down", "sent")
    # The content type moved with the model: the permission granted before is the api app's now.
    moved = Permission.objects.get(pk=grant.pk)
    assert moved.content_type.app_label == "api"
    assert User.objects.get(pk=user.pk).has_perm("api.change_apitoken")
