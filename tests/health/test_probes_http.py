from __future__ import annotations

import time

import pytest

from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError, ProbeError, ProbeTimeout
from health.probes.http import _MISSING, HttpProbe, json_lookup
from health.runner import probe_once
from tests.health.factories import ServiceFactory
from tests.servers import Reply, free_port

pytestmark = pytest.mark.django_db


def http_service(url: str, timeout: float = 2.0, degraded_latency_ms: int = 2000, **settings):
    return ServiceFactory.build(
        kind="http", settings={"url": url, **settings}, timeout=timeout, degraded_latency_ms=degraded_latency_ms
    )


def test_it_is_up_on_a_2xx_answer(http_server):
    outcome = probe_once(http_service(http_server.url + "/health"))
    assert outcome.status == UP
    assert outcome.detail == "HTTP 200"
    assert outcome.latency_ms is not None and outcome.latency_ms >= 0
    assert http_server.requests[0]["path"] == "/health"
    assert http_server.requests[0]["headers"]["User-Agent"] == "opsportal-probe"


def test_it_is_down_on_a_status_mismatch(http_server):
    http_server.reply = Reply(status=503, body="busy")
    outcome = probe_once(http_service(http_server.url))
    assert outcome.status == DOWN
    assert outcome.detail == "HTTP 503 (expected 2xx)"


def test_it_accepts_a_listed_non_2xx_status_and_refuses_an_unlisted_2xx(http_server):
    http_server.reply = Reply(status=401)
    assert probe_once(http_service(http_server.url, expect_status=[401])).status == UP
    http_server.reply = Reply(status=200)
    outcome = probe_once(http_service(http_server.url, expect_status=[204, 401]))
    assert outcome.status == DOWN
    assert "expected 204, 401" in outcome.detail


def test_it_checks_body_contains(http_server):
    http_server.reply = Reply(body="all systems nominal")
    assert probe_once(http_service(http_server.url, body_contains="nominal")).status == UP
    outcome = probe_once(http_service(http_server.url, body_contains="green"))
    assert outcome.status == DOWN
    assert "does not contain 'green'" in outcome.detail


def test_it_checks_a_json_field(http_server):
    http_server.reply = Reply(body={"status": "ok", "data": {"items": [{"state": "ready"}]}})
    assert probe_once(http_service(http_server.url, json_path="status", json_equals="ok")).status == UP
    assert probe_once(http_service(http_server.url, json_path="data.items.0.state", json_equals="ready")).status == UP
    wrong = probe_once(http_service(http_server.url, json_path="status", json_equals="healthy"))
    assert wrong.status == DOWN
    assert "status is 'ok', expected 'healthy'" in wrong.detail
    missing = probe_once(http_service(http_server.url, json_path="data.nothing"))
    assert missing.status == DOWN
    assert "JSON has no data.nothing" in missing.detail


def test_it_is_down_when_a_json_path_meets_a_non_json_body(http_server):
    http_server.reply = Reply(body="<html>not json</html>")
    outcome = probe_once(http_service(http_server.url, json_path="status"))
    assert outcome.status == DOWN
    assert "not JSON" in outcome.detail


def test_it_follows_a_dotted_path_through_lists_and_dicts():
    doc = {"a": [{"b": 1}, {"b": 2}]}
    assert json_lookup(doc, "a.1.b") == 2
    assert json_lookup(doc, "a.-1.b") == 2
    assert json_lookup(doc, "a.5.b") is _MISSING
    assert json_lookup(doc, "c") is _MISSING


def test_it_expands_env_headers_and_never_shows_the_secret(http_server, monkeypatch):
    secret = "sk-test-VERYSECRET-1234567890"
    monkeypatch.setenv("OPS_TEST_API_KEY", secret)
    # The server echoes the header in its error body; the probe must still not reveal it.
    http_server.handler = lambda req: Reply(status=200, body=req["headers"].get("Authorization", ""))
    service = http_service(
        http_server.url, headers={"Authorization": "Bearer ${OPS_TEST_API_KEY}"}, body_contains="nope"
    )
    outcome = probe_once(service)
    assert http_server.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"
    assert outcome.status == DOWN
    assert secret not in outcome.detail


def test_it_scrubs_a_secret_in_the_url_from_the_detail(monkeypatch):
    secret = "tok-abcdef123456"
    monkeypatch.setenv("OPS_TEST_URL_TOKEN", secret)
    port = free_port()
    outcome = probe_once(http_service(f"http://127.0.0.1:{port}/x?token=${{OPS_TEST_URL_TOKEN}}", timeout=1))
    assert outcome.status == DOWN
    assert secret not in outcome.detail


def test_it_is_down_with_a_clear_detail_when_a_header_variable_is_unset(http_server, monkeypatch):
    monkeypatch.delenv("OPS_TEST_UNSET_VAR", raising=False)
    outcome = probe_once(http_service(http_server.url, headers={"X-Key": "${OPS_TEST_UNSET_VAR}"}))
    assert outcome.status == DOWN
    assert "OPS_TEST_UNSET_VAR is not set" in outcome.detail
    assert http_server.requests == []


def test_it_is_degraded_when_slower_than_degraded_latency(http_server):
    http_server.reply = Reply(delay=0.3)
    outcome = probe_once(http_service(http_server.url, degraded_latency_ms=50))
    assert outcome.status == DEGRADED
    assert outcome.detail.startswith("slow: ")
    assert outcome.latency_ms >= 250


def test_it_times_out_on_a_hanging_server(http_server):
    http_server.reply = Reply(hang=True)
    start = time.monotonic()
    outcome = probe_once(http_service(http_server.url, timeout=0.5))
    assert outcome.status == DOWN
    assert "within 0.5 s" in outcome.detail
    assert time.monotonic() - start < 5  # generous: bounded by the timeout, not by the server


def test_it_bounds_a_slowloris_trickle_in_time(http_server):
    http_server.reply = Reply(body="x" * 200, trickle=0.1)  # 20 s to send it all
    probe = HttpProbe({"url": http_server.url}, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ProbeTimeout, match="not complete within 1 s"):
        probe.run()
    assert time.monotonic() - start < 5


def test_it_bounds_an_endless_body_in_size_and_time(http_server, settings):
    settings.PROBE_MAX_BODY_BYTES = 256 * 1024
    http_server.reply = Reply(endless=True)
    probe = HttpProbe({"url": http_server.url}, timeout=5.0)
    start = time.monotonic()
    with pytest.raises(ProbeError, match="larger than 262144 bytes"):
        probe.run()
    assert time.monotonic() - start < 5


def test_it_is_down_on_a_redirect_loop(http_server):
    http_server.reply = Reply(status=302, headers={"Location": "/loop"}, body="")
    outcome = probe_once(http_service(http_server.url + "/loop"))
    assert outcome.status == DOWN
    assert "too many redirects" in outcome.detail
    assert len(http_server.requests) == 11


def test_it_reports_a_redirect_itself_when_not_following(http_server):
    http_server.reply = Reply(status=301, headers={"Location": "/elsewhere"}, body="")
    outcome = probe_once(http_service(http_server.url, follow_redirects=False, expect_status=[301]))
    assert outcome.status == UP
    assert len(http_server.requests) == 1


def test_it_is_down_when_nothing_listens():
    outcome = probe_once(http_service(f"http://127.0.0.1:{free_port()}/"))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("connection failed")


def test_it_sends_method_and_body(http_server):
    probe_once(http_service(http_server.url, method="POST", body='{"ping": 1}'))
    assert http_server.requests[0]["method"] == "POST"
    assert http_server.requests[0]["body"] == b'{"ping": 1}'


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "settings.url: is required"),
        ({"url": "http://x", "method": "FETCH"}, "settings.method: must be one of"),
        ({"url": "http://x", "expect_status": [200, 999]}, "settings.expect_status: must be at most 599"),
        ({"url": "http://x", "headers": {"A": 1}}, "settings.headers: must be a table of strings"),
        ({"url": "http://x", "verify_tls": "yes"}, "settings.verify_tls: must be true or false"),
        ({"url": "http://x", "colour": "red"}, "settings.colour: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ProbeConfigError, match=message.replace(".", r"\.")):
        HttpProbe(settings, timeout=1)
    outcome = probe_once(ServiceFactory.build(kind="http", settings=settings))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("config error: " + message)


def test_it_times_out_when_the_body_stalls(http_server):
    http_server.reply = Reply(body="ab", trickle=5)  # headers at once, then silence longer than the timeout
    start = time.monotonic()
    outcome = probe_once(http_service(http_server.url, timeout=0.5))
    assert outcome.status == DOWN
    assert "stalled for 0.5 s" in outcome.detail
    assert time.monotonic() - start < 4


def test_it_keeps_no_cookies_between_probes(http_server):
    http_server.reply = Reply(headers={"Set-Cookie": "session=abc123; Path=/"})
    probe_once(http_service(http_server.url))
    probe_once(http_service(http_server.url))
    assert len(http_server.requests) == 2
    assert "Cookie" not in http_server.requests[1]["headers"]
