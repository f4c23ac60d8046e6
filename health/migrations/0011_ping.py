import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def fill_ping_uuids(apps, schema_editor):
    """Each existing service its own uuid (a callable default in AddField would give every row the same one)."""
    Service = apps.get_model("health", "Service")
    for service in Service.objects.filter(ping_uuid__isnull=True).only("pk"):
        Service.objects.filter(pk=service.pk).update(ping_uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0010_models_moved_out"),
    ]

    operations = [
        migrations.AddField(
            model_name="service",
            name="ping_uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_ping_uuids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="service",
            name="ping_uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.CreateModel(
            name="Ping",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("received_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "kind",
                    models.CharField(
                        choices=[("success", "success"), ("start", "start"), ("fail", "fail"), ("log", "log")],
                        max_length=8,
                    ),
                ),
                ("exit_status", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("body", models.TextField(blank=True)),
                ("remote_addr", models.CharField(blank=True, max_length=64)),
                ("user_agent", models.CharField(blank=True, max_length=200)),
                (
                    "service",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="pings",
                        to="health.service",
                        to_field="ping_uuid",
                    ),
                ),
            ],
            options={
                "ordering": ["-received_at"],
                "indexes": [models.Index(fields=["service", "-received_at"], name="ping_service_time")],
            },
        ),
    ]
