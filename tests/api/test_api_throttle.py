"""Bad bearer tokens are limited per client address in the shared cache (issue 14.9, the API part).

Through the test client with REMOTE_ADDR set: past API_BAD_TOKEN_LIMIT bad tokens in the window the
address answers 429 with Retry-After, for any token; another address is not affected; a failing cache
never turns a request into a 500.
"""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from django.db import connection
from django.test import Client

from api.models import ApiToken
from tests.api.api_support import make_user, staff_token
from tests.faults.portal import server_url
from tests.gunicorn_portal import manage
from tests.servers import free_port

pytestmark = pytest.mark.django_db

URL = "/health/recover"
BAD = "ops_this-token-was-never-issued-0123456789"
# Mid-window, so a concurrent count never straddles two windows.
NOW = (time.time() // 60) * 60 + 30


def post(client: Client, token: str, address: str):
    body = json.dumps({"services": []})
    return client.post(
        URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=address
    )


@pytest.fixture
def limit(settings) -> int:
    settings.API_BAD_TOKEN_LIMIT = 3
    settings.API_BAD_TOKEN_WINDOW = 60
    return 3


def test_it_has_the_documented_defaults(settings):
    assert settings.API_BAD_TOKEN_LIMIT == 20
    assert settings.API_BAD_TOKEN_WINDOW == 60


def test_it_answers_429_with_retry_after_past_the_limit_and_only_for_that_address(client, limit):
    _, good = staff_token()
    for _ in range(limit):
        assert post(client, BAD, "10.9.0.1").status_code == 401
    refused = post(client, BAD, "10.9.0.1")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert refused.json()["error"].startswith("too many requests with a bad API token")
    assert 1 <= int(refused["Retry-After"]) <= 60
    # A right guess from the same address gains nothing...
    assert post(client, good, "10.9.0.1").status_code == 429
    # ...and another address, with a good token or a bad one, is not blocked.
    assert post(client, good, "10.9.0.2").status_code == 200
    assert post(client, BAD, "10.9.0.2").status_code == 401


def test_it_limits_at_twenty_by_default(client):
    for n in range(20):
        assert post(client, BAD, "10.9.1.1").status_code == 401, n
    assert post(client, BAD, "10.9.1.1").status_code == 429


def test_it_does_not_count_good_tokens(client, limit):
    _, good = staff_token()
    for _ in range(limit * 3):
        assert post(client, good, "10.9.2.1").status_code == 200


def test_it_counts_in_the_shared_cache_table(client, limit):
    # The DatabaseCache table every worker reads: a count kept per process would not hold across workers.
    post(client, BAD, "10.9.3.1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM opsportal_cache WHERE cache_key LIKE %s", ["%bad-token:10.9.3.1:%"])
        assert cursor.fetchone()[0] == 1


def test_it_logs_a_refused_token_without_the_token(client, limit, caplog):
    with caplog.at_level(logging.WARNING, logger="opsportal.health.auth"):
        for _ in range(limit + 1):
            post(client, BAD, "10.9.4.1")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "API token refused from 10.9.4.1" in text
    assert "bad-token limit reached for 10.9.4.1" in text
    assert BAD not in text and BAD[:12] not in text


def test_it_fails_open_when_the_cache_table_is_missing(client, limit):
    _, good = staff_token()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE opsportal_cache")  # rolled back with the test's transaction
    for _ in range(limit + 2):
        response = post(client, BAD, "10.9.5.1")
        assert response.status_code == 401, response.content
    assert post(client, good, "10.9.5.1").status_code == 200
    # The failed cache queries did not break the request's transaction (a savepoint kept it).
    assert ApiToken.objects.count() == 1


def test_it_fails_open_when_the_cache_raises(client, limit, settings):
    # A real Redis cache at a port nothing listens on: every call raises ConnectionError.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    _, good = staff_token()
    for _ in range(limit + 2):
        assert post(client, BAD, "10.9.6.1").status_code == 401
    assert post(client, good, "10.9.6.1").status_code == 200


def test_it_limits_the_read_endpoints_too(client, limit, settings):
    settings.HEALTH_PUBLIC = False
    for _ in range(limit):
        assert (
            client.get("/health/status", HTTP_AUTHORIZATION=f"Bearer {BAD}", REMOTE_ADDR="10.9.7.1").status_code == 401
        )
    answer = client.get("/health/status", HTTP_AUTHORIZATION=f"Bearer {BAD}", REMOTE_ADDR="10.9.7.1")
    assert answer.status_code == 429 and answer["Retry-After"]
    assert make_user("someone-else")  # the database still answers after the refusals


def test_it_counts_by_the_forwarded_address_behind_the_shipped_proxy(client, limit, settings):
    # Behind deploy/nginx-opsportal.conf every peer is 127.0.0.1: one guesser must not lock out the rest.
    settings.LOGIN_PROXY_COUNT = 1
    _, good = staff_token()

    def via_proxy(token: str, forwarded: str):
        body = json.dumps({"services": []})
        return client.post(
            URL,
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    for _ in range(limit):
        assert via_proxy(BAD, "10.9.8.1").status_code == 401
    assert via_proxy(BAD, "10.9.8.1").status_code == 429
    assert via_proxy(good, "10.9.8.1").status_code == 429
    assert via_proxy(good, "10.9.8.2").status_code == 200
    # A client cannot escape by prepending fakes: the proxy's entry (the rightmost) is the one counted.
    assert via_proxy(good, "10.9.8.2, 10.9.8.1").status_code == 429


def test_it_ignores_x_forwarded_for_without_a_trusted_proxy(client, limit, settings):
    settings.LOGIN_PROXY_COUNT = 0
    _, good = staff_token()
    for n in range(limit):
        response = client.post(
            URL,
            json.dumps({"services": []}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {BAD}",
            REMOTE_ADDR="10.9.9.1",
            HTTP_X_FORWARDED_FOR=f"10.9.9.{100 + n}",  # a forged header per request changes nothing
        )
        assert response.status_code == 401
    assert post(client, good, "10.9.9.1").status_code == 429


# Run by `manage.py shell` in a real process: 8 threads, each with its own database connection (as web
# worker threads are), count 10 failures each, then print the count the cache holds.
CONCURRENT = """
import threading
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.db import connections
from api import throttle

NOW = %(now)r
assert isinstance(caches["default"], DatabaseCache), caches["default"]
barrier = threading.Barrier(8)

def fail_often():
    barrier.wait(timeout=30)
    try:
        for _ in range(10):
            throttle.record_failure("10.9.10.1", now=NOW)
    finally:
        connections.close_all()

workers = [threading.Thread(target=fail_often) for _ in range(8)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print("counted", caches["default"].get(throttle._key("10.9.10.1", throttle._window(NOW, 60)[0])))
"""


@pytest.mark.system
def test_it_counts_concurrent_failures_exactly_in_the_database_cache(tmp_path):
    # SQLite: a file in WAL mode as deployed (the suite's in-memory database cannot take concurrent
    # writers); PostgreSQL: the suite's own test database.
    if connection.vendor == "sqlite":
        url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
    else:
        url = server_url(connection.settings_dict["NAME"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k != "TEST_DATABASE_NAME"},
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "API_BAD_TOKEN_LIMIT": "1000",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    manage(env, "createcachetable")
    out = manage(env, "shell", "-c", CONCURRENT % {"now": NOW})
    # Every failure counted: a get-then-set count loses those of other threads.
    assert out.split()[-2:] == ["counted", "80"], out
