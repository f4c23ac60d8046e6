"""channel, delivery: moved here from health with their tables (db_table) and rows; state only.

Their content types move too, so the permissions granted on them (and admin log entries) stay.
"""

import core.spec
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from core.moved import move_content_types


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("health", "0010_models_moved_out"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Channel",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.SlugField(max_length=100, unique=True)),
                        (
                            "url",
                            models.CharField(
                                help_text="An apprise URL; put secrets in environment variables: json://host/${TOKEN}",
                                max_length=1000,
                            ),
                        ),
                        (
                            "events",
                            models.JSONField(blank=True, default=list, help_text="Event kinds to send; empty: all."),
                        ),
                        (
                            "remind_every",
                            models.PositiveIntegerField(
                                default=0,
                                help_text="seconds between reminders while an incident stays open; 0: off",
                                validators=[core.spec.KeyValidator("int", 0, 2592000)],
                            ),
                        ),
                        ("enabled", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "services",
                            models.ManyToManyField(
                                blank=True,
                                help_text="Services whose events to send; none: all.",
                                related_name="channels",
                                to="health.service",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "health_channel",
                        "ordering": ["name"],
                    },
                ),
                migrations.CreateModel(
                    name="Delivery",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("sent", "Sent"),
                                    ("failed", "Failed"),
                                    ("held", "Held"),
                                ],
                                default="pending",
                                max_length=8,
                            ),
                        ),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                        ("sent_at", models.DateTimeField(blank=True, null=True)),
                        ("error", models.CharField(blank=True, max_length=500)),
                        (
                            "channel",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="deliveries",
                                to="notify.channel",
                            ),
                        ),
                        (
                            "event",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="deliveries",
                                to="health.event",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "deliveries",
                        "db_table": "health_delivery",
                        "ordering": ["-created_at"],
                        "indexes": [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")],
                        "constraints": [
                            models.UniqueConstraint(fields=("channel", "event"), name="one_delivery_per_channel_event")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        move_content_types(["channel", "delivery"], "health", "notify"),
    ]
