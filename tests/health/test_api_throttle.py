"""Bad bearer tokens are limited per client address in the shared cache (issue 14.9, the API part).

Through the test client with REMOTE_ADDR set: past API_BAD_TOKEN_LIMIT bad tokens in the window the
address answers 429 with Retry-After, for any token; another address is not affected; a failing cache
never turns a request into a 500.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test import Client

from health.models import ApiToken
from tests.health.api_support import make_user, staff_token
from tests.servers import free_port

pytestmark = pytest.mark.django_db

URL = "/health/recover"
BAD = "ops_this-token-was-never-issued-0123456789"


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
