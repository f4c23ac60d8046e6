from __future__ import annotations

import pytest

from health.models import Service
from recovery.actions import ActionError
from recovery.actions.http import HttpAction
from tests.servers import Reply, free_port


def action(settings: dict, timeout: float = 5) -> HttpAction:
    return HttpAction(settings, service=Service(name="svc", kind="http"), timeout=timeout)


def test_it_calls_the_hook_with_headers_from_the_environment(http_server, monkeypatch):
    monkeypatch.setenv("OPS_HOOK_TOKEN", "tok-abcdef-123456")
    http_server.reply = Reply(202, "restarting tok-abcdef-123456")
    result = action(
        {"url": http_server.url + "/restart", "headers": {"Authorization": "Bearer ${OPS_HOOK_TOKEN}"}, "body": "{}"}
    ).run()
    (request,) = http_server.requests
    assert request["method"] == "POST" and request["path"] == "/restart" and request["body"] == b"{}"
    assert request["headers"]["Authorization"] == "Bearer tok-abcdef-123456"
    assert result.ok is True and result.exit_code == 202
    assert "tok-abcdef-123456" not in result.detail and "***" in result.detail


def test_it_fails_on_an_unexpected_status(http_server):
    http_server.reply = Reply(200, "fine")
    result = action({"url": http_server.url, "method": "PUT", "expect_status": [204]}).run()
    assert result.ok is False and "HTTP 200 (expected 204)" in result.detail


def test_it_raises_when_nothing_answers_or_the_hook_hangs(http_server):
    with pytest.raises(ActionError, match="request failed: ConnectionError"):
        action({"url": f"http://127.0.0.1:{free_port()}/"}).run()
    http_server.reply = Reply(hang=True)
    with pytest.raises(ActionError, match="no answer within 0.3 s"):
        action({"url": http_server.url}, timeout=0.3).run()


@pytest.mark.django_db
def test_it_fixes_a_service_through_its_own_restart_hook(http_server, make_service, add_action):
    from recovery.engine import recover_services

    fixed = []

    def handle(request: dict) -> Reply:
        if request["path"] == "/restart" and request["method"] == "POST":
            fixed.append(True)
            return Reply(202, "restarting")
        return Reply(200, "ok") if fixed else Reply(503, "broken")

    http_server.handler = handle
    svc = make_service(url=http_server.url + "/health")
    add_action(svc, "http", {"url": http_server.url + "/restart", "expect_status": [202]})

    (result,) = recover_services([svc.name], trigger="manual")

    assert result["outcome"] == "succeeded" and result["action"] == "http"
    assert fixed == [True]
