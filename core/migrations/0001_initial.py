"""schedulerheartbeat, spoolbatch: moved here from health with their tables (db_table) and rows; state only.

Their content types move too, so the permissions granted on them (and admin log entries) stay.
"""

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
                    name="SchedulerHeartbeat",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("last_run_at", models.DateTimeField()),
                        ("host", models.CharField(blank=True, max_length=100)),
                        ("pid", models.PositiveIntegerField(blank=True, null=True)),
                        ("passes", models.PositiveBigIntegerField(default=0)),
                    ],
                    options={
                        "db_table": "health_schedulerheartbeat",
                    },
                ),
                migrations.CreateModel(
                    name="SpoolBatch",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("batch_id", models.CharField(max_length=64, unique=True)),
                        ("replayed_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("records", models.PositiveIntegerField(default=0)),
                    ],
                    options={
                        "db_table": "health_spoolbatch",
                    },
                ),
            ],
            database_operations=[],
        ),
        move_content_types(["schedulerheartbeat", "spoolbatch"], "health", "core"),
    ]
