"""The foundation's tables: liveness beats and replayed spool files. They hold no domain data."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SchedulerHeartbeat(models.Model):
    """A liveness row: the dispatcher's pass (`dispatcher`), each dispatcher loop (`loop:<owner>`) and each recovery
    attempt's owner (`recovery:<owner>`) beat here; core.liveness reads their age."""

    name = models.CharField(max_length=100, unique=True)
    last_run_at = models.DateTimeField()
    host = models.CharField(max_length=100, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    passes = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "health_schedulerheartbeat"  # made by health's migrations; moved here with its rows

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_run_at:%Y-%m-%d %H:%M:%S}"


class SpoolBatch(models.Model):
    """A replayed outage-spool file (core.spool): written in the replay's transaction, so a file is
    replayed exactly once even when the process dies between commit and unlink."""

    batch_id = models.CharField(max_length=64, unique=True)
    replayed_at = models.DateTimeField(default=timezone.now)
    records = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "health_spoolbatch"  # made by health's migrations; moved here with its rows

    def __str__(self) -> str:
        return self.batch_id
