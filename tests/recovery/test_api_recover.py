"""POST /health/recover through the real engine: what the results say about the policy.

Auth and body validation (401/403/400/404/405) are covered in tests/api/test_api_recover.py.
"""

from __future__ import annotations

import json

import pytest

from recovery.models import RecoveryAttempt
from tests.api.api_support import bearer, staff_token
from tests.recovery.conftest import touch_argv

URL = "/health/recover"


def post(client, body: dict, token: str):
    return client.generic("POST", URL, json.dumps(body).encode(), content_type="application/json", **bearer(token))


@pytest.mark.django_db
def test_it_answers_success_then_a_skip_with_its_reason_and_force_runs_again(
    client, flag_target, make_service, add_action
):
    server, flag = flag_target
    add_action(make_service(url=server.url), "command", {"argv": touch_argv(flag)})
    row, token = staff_token()

    first = post(client, {"services": ["web"]}, token)
    second = post(client, {"services": ["web"]}, token)
    stats_then = client.get("/health/recovery-stats").json()["stats"]
    forced = post(client, {"services": ["web"], "force": True}, token)

    assert first.status_code == second.status_code == forced.status_code == 200
    (ok,) = first.json()["results"]
    assert ok["success"] is True and ok["skipped"] is False and ok["outcome"] == "succeeded" and ok["reason"] == ""
    body = second.json()
    (skip,) = body["results"]
    assert skip["success"] is False and skip["skipped"] is True and skip["outcome"] == "skipped_cooldown"
    assert skip["reason"].startswith("cooldown: next attempt allowed in")
    assert body["attempted"] == 0
    assert body["stats"] == stats_then
    assert body["stats"]["skipped"] == 1 and body["stats"]["successful"] == 1
    assert forced.json()["results"][0]["outcome"] == "succeeded"
    attempt = RecoveryAttempt.objects.get(pk=ok["attempt"])
    assert attempt.trigger == "api" and attempt.requested_by == row.user
