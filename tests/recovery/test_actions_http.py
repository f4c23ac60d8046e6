from __future__ import annotations

import pytest

from core.spec import ConfigError
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


# -- issue 14 items 2 and 4
def test_it_refuses_a_header_secret_with_a_newline_naming_key_and_variable(http_server, monkeypatch):
    monkeypatch.setenv("OPS_HOOK_NL", "hook-nl-secret-777\n")
    with pytest.raises(ActionError) as caught:
        action({"url": http_server.url, "headers": {"X-Hook-Key": "${OPS_HOOK_NL}"}}).run()
    assert "X-Hook-Key" in str(caught.value) and "OPS_HOOK_NL" in str(caught.value)
    assert "hook-nl-secret-777" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"recovery\[0\]\.headers\.X-Hook-Key: the value of"):
        HttpAction.validate_settings({"url": "http://x/", "headers": {"X-Hook-Key": "${OPS_HOOK_NL}"}}, "recovery[0]")


def test_it_scrubs_the_hook_answer_before_cutting_it(http_server, monkeypatch):
    # The secret straddles the cut: scrubbing a tail would miss it and keep its last characters.
    secret = "hook-tail-secret-9876543210"
    monkeypatch.setenv("OPS_HOOK_TOKEN", secret)
    http_server.reply = Reply(500, "x" * 400 + secret + "y" * 290)
    result = action({"url": http_server.url, "headers": {"X-Token": "${OPS_HOOK_TOKEN}"}}).run()
    assert result.ok is False
    assert "9876543210" not in result.detail


def test_it_does_not_follow_a_redirect_by_default(make_http_server):
    first, other = make_http_server(), make_http_server()
    first.reply = Reply(307, headers={"Location": other.url + "/x"}, body="")
    result = action({"url": first.url, "expect_status": [307]}).run()
    assert result.ok is True and other.requests == []


def test_it_drops_configured_headers_on_a_redirect_to_another_origin(make_http_server, monkeypatch):
    monkeypatch.setenv("OPS_HOOK_TOKEN", "hook-redirect-secret-55")
    first, other = make_http_server(), make_http_server()
    first.reply = Reply(307, headers={"Location": other.url + "/landed"}, body="")
    other.reply = Reply(202, "ok")
    headers = {"X-Api-Key": "${OPS_HOOK_TOKEN}", "Cookie": "s=${OPS_HOOK_TOKEN}"}
    result = action({"url": first.url, "headers": headers, "follow_redirects": True, "body": "{}"}).run()
    assert result.ok is True and result.exit_code == 202
    assert first.requests[0]["headers"]["X-Api-Key"] == "hook-redirect-secret-55"
    (landed,) = other.requests
    assert landed["method"] == "POST" and landed["body"] == b"{}"
    assert "hook-redirect-secret-55" not in repr(landed["headers"])
    with pytest.raises(ActionError, match="redirect to another origin"):
        action({"url": first.url, "headers": headers, "follow_redirects": "same-origin"}).run()
    assert len(other.requests) == 1
