"""Q_CLUSTER and CACHES for each deployment, read by a fresh interpreter (settings are read at start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'q': s.Q_CLUSTER, 'cache': s.CACHES['default']['BACKEND']}))"
)


def read_settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    clean.update(env, DJANGO_SETTINGS_MODULE="opsportal.settings")
    done = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.system
def test_it_uses_the_orm_broker_and_the_database_cache_by_default():
    found = read_settings()
    assert found["q"]["orm"] == "default"
    assert "redis" not in found["q"]
    assert found["cache"] == "django.core.cache.backends.db.DatabaseCache"  # shared between processes


@pytest.mark.system
def test_it_uses_redis_for_broker_and_cache_when_redis_url_is_set():
    found = read_settings(REDIS_URL="redis://127.0.0.1:6379/0")
    assert found["q"]["redis"] == "redis://127.0.0.1:6379/0"
    assert "orm" not in found["q"]
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.system
def test_it_never_redelivers_a_task_forever():
    q = read_settings(DISPATCH_LOOP_SECONDS="85")["q"]
    assert q["timeout"] < q["retry"]  # a running task is never handed out again while it runs
    assert q["max_attempts"] == 1
    assert q["ack_failures"] is True  # a failed task is recorded once, not re-queued
    assert q["timeout"] > 85  # the dispatcher's loop fits inside its task
