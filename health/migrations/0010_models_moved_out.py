"""ApiToken, SchedulerHeartbeat, SpoolBatch, Channel and Delivery moved to the api, core and notify apps.

State only: their tables keep their names (each model sets db_table) and their rows.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0009_event_spool_dropped"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="apitoken",
                    name="user",
                ),
                migrations.RemoveField(
                    model_name="channel",
                    name="services",
                ),
                migrations.RemoveField(
                    model_name="delivery",
                    name="channel",
                ),
                migrations.RemoveField(
                    model_name="delivery",
                    name="event",
                ),
                migrations.DeleteModel(
                    name="SchedulerHeartbeat",
                ),
                migrations.DeleteModel(
                    name="SpoolBatch",
                ),
                migrations.DeleteModel(
                    name="ApiToken",
                ),
                migrations.DeleteModel(
                    name="Channel",
                ),
                migrations.DeleteModel(
                    name="Delivery",
                ),
            ],
            database_operations=[],
        ),
    ]
