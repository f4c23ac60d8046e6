from __future__ import annotations

import time

import pytest

from core.http import redirect_refusal, same_origin
from core.spec import ConfigError
from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError, ProbeError, ProbeTimeout
from health.probes.http import _MISSING, HttpProbe, json_lookup
from health.runner import probe_once
from tests.factories import ServiceFactory
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
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert "OPS_TEST_UNSET_VAR is not set" in outcome.detail
    assert http_server.requests == []


def test_it_is_degraded_when_slower_than_degraded_latency(http_server):
    http_server.reply = Reply(delay=0.3)
    outcome = probe_once(http_service(http_server.url, degraded_latency_ms=50))
    assert outcome.status == DEGRADED
    assert outcome.detail.startswith("slow: ")
    assert outcome.latency_ms >= 250


@pytest.mark.slow("waits out the read timeout")
def test_it_times_out_on_a_hanging_server(http_server):
    http_server.reply = Reply(hang=True)
    start = time.monotonic()
    outcome = probe_once(http_service(http_server.url, timeout=0.5))
    assert outcome.status == DOWN
    assert "within 0.5 s" in outcome.detail
    assert time.monotonic() - start < 5  # generous: bounded by the timeout, not by the server


@pytest.mark.slow("a slowloris target trickling until the time bound")
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
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: " + message)


@pytest.mark.slow("waits out the read timeout")
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


# -- issue 14 item 2: secrets in the forms an error or an echo carries them in
def test_it_refuses_a_header_secret_ending_in_a_newline_naming_key_and_variable(http_server, monkeypatch):
    # As when the value was read from a file: requests' error would quote its repr (`...\\n`).
    monkeypatch.setenv("OPS_TEST_NL_KEY", "nl-secret-0123456789\n")
    outcome = probe_once(http_service(http_server.url, headers={"X-Api-Key": "${OPS_TEST_NL_KEY}"}))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert "nl-secret-0123456789" not in outcome.detail
    assert "X-Api-Key" in outcome.detail and "OPS_TEST_NL_KEY" in outcome.detail and "line break" in outcome.detail
    assert http_server.requests == []


def test_it_refuses_a_header_with_a_line_break_at_import_time(monkeypatch):
    monkeypatch.setenv("OPS_TEST_NL_KEY", "nl-secret-0123456789\n")
    with pytest.raises(ConfigError, match=r"service\[0\]\.headers\.X-Api-Key: the value of \$\{OPS_TEST_NL_KEY\}"):
        HttpProbe.validate_settings({"url": "http://x/", "headers": {"X-Api-Key": "${OPS_TEST_NL_KEY}"}}, "service[0]")
    with pytest.raises(ConfigError, match="X-Raw: must not contain a line break"):
        HttpProbe.validate_settings({"url": "http://x/", "headers": {"X-Raw": "a\r\nX-Evil: 1"}}, "service[0]")
    monkeypatch.delenv("OPS_TEST_NL_KEY")
    # Not set where the file is imported: checked when probing instead.
    assert HttpProbe.validate_settings({"url": "http://x/", "headers": {"K": "${OPS_TEST_NL_KEY}"}}, "s")


def test_it_scrubs_a_url_secret_the_target_echoes_in_requests_own_encoding(http_server, monkeypatch):
    # requests encodes the space but keeps `/` and `=`: neither quote() nor quote_plus() gives that form.
    monkeypatch.setenv("OPS_TEST_PATH_TOKEN", "path secret/4242=")
    http_server.handler = lambda request: Reply(body={"status": request["path"]})
    outcome = probe_once(
        http_service(http_server.url + "/${OPS_TEST_PATH_TOKEN}", json_path="status", json_equals="ok")
    )
    assert http_server.requests[0]["path"] == "/path%20secret/4242="
    assert outcome.status == DOWN
    assert "4242" not in outcome.detail and "***" in outcome.detail


def test_it_scrubs_the_password_of_a_url_from_a_variable(http_server, monkeypatch):
    monkeypatch.setenv("OPS_TEST_WHOLE_URL", f"http://probe:pw-{'z' * 12}@127.0.0.1:{http_server.port}/x")
    http_server.handler = lambda request: Reply(status=500, body="")
    probe = HttpProbe({"url": "${OPS_TEST_WHOLE_URL}"}, timeout=2)
    with pytest.raises(ProbeError):
        probe.run()
    assert f"pw-{'z' * 12}" in probe.secrets and f"probe:pw-{'z' * 12}" in probe.secrets


# -- issue 14 item 4: configured headers never follow a redirect to another origin
SECRET_HEADERS = {"X-Api-Key": "${OPS_TEST_REDIRECT_KEY}", "Cookie": "session=${OPS_TEST_REDIRECT_KEY}"}


@pytest.fixture
def two_origins(make_http_server, monkeypatch):
    monkeypatch.setenv("OPS_TEST_REDIRECT_KEY", "redirect-key-31337")
    first, other = make_http_server(), make_http_server()
    first.routes["/start"] = Reply(status=302, headers={"Location": other.url + "/landed"}, body="")
    first.routes["/same"] = Reply(status=302, headers={"Location": "/here"}, body="")
    return first, other


def test_it_drops_configured_headers_on_a_redirect_to_another_port(two_origins):
    first, other = two_origins
    outcome = probe_once(http_service(first.url + "/start", headers=SECRET_HEADERS))
    assert outcome.status == UP
    assert first.requests[0]["headers"]["X-Api-Key"] == "redirect-key-31337"
    (landed,) = other.requests
    assert landed["path"] == "/landed"
    assert "redirect-key-31337" not in repr(landed["headers"])
    assert "X-Api-Key" not in landed["headers"] and "Cookie" not in landed["headers"]


def test_it_keeps_configured_headers_on_a_same_origin_redirect(two_origins):
    first, _ = two_origins
    outcome = probe_once(http_service(first.url + "/same", headers=SECRET_HEADERS, follow_redirects="same-origin"))
    assert outcome.status == UP
    assert [r["path"] for r in first.requests] == ["/same", "/here"]
    assert first.requests[1]["headers"]["X-Api-Key"] == "redirect-key-31337"


def test_it_refuses_a_cross_origin_redirect_when_same_origin_only(two_origins):
    first, other = two_origins
    outcome = probe_once(http_service(first.url + "/start", headers=SECRET_HEADERS, follow_redirects="same-origin"))
    assert outcome.status == DOWN
    assert "redirect to another origin" in outcome.detail and f"127.0.0.1:{other.port}" in outcome.detail
    assert other.requests == []


def test_it_never_follows_https_to_http():
    assert (
        redirect_refusal("https://a.example/x", "http://a.example/y", True) == "refused a redirect from https to http"
    )
    assert redirect_refusal("http://a.example/x", "https://a.example/y", "same-origin") is not None
    assert redirect_refusal("http://a.example/x", "http://a.example:80/y", "same-origin") is None
    assert redirect_refusal("http://a.example/x", "http://b.example/y", True) is None
    assert not same_origin("http://a.example/x", "http://a.example:8080/x")
    assert same_origin("https://A.example/x", "https://a.example:443/y")


def test_it_accepts_only_true_false_or_same_origin_for_follow_redirects():
    with pytest.raises(ConfigError, match='follow_redirects: must be true, false or "same-origin"'):
        HttpProbe.validate_settings({"url": "http://x/", "follow_redirects": "yes"}, "service[0]")


# -- issue 14 item 2: a long secret is scrubbed whole before the detail is cut, so no piece of it is left
def _pieces(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def test_it_leaves_no_piece_of_a_long_url_secret_without_a_scheme(monkeypatch):
    # requests quotes the URL twice ("Perhaps you meant https://…"); the second copy crossed the cut.
    token = "0123456789abcdef" * 6
    monkeypatch.setenv("OPS_TEST_HCURL", f"localhost/{token}")  # no scheme: refused before any traffic
    outcome = probe_once(http_service("${OPS_TEST_HCURL}"))
    assert outcome.status == DOWN
    assert "No scheme supplied" in outcome.detail and "***" in outcome.detail
    assert [p for p in _pieces(token) if p in outcome.detail] == [], outcome.detail


def test_it_leaves_no_piece_of_a_long_header_secret_with_a_leading_space(http_server, monkeypatch):
    token = "leadingspace" + "K" * 120
    monkeypatch.setenv("OPS_TEST_SPACE_KEY", f" {token}")
    outcome = probe_once(http_service(http_server.url, headers={"X-Api-Key": "${OPS_TEST_SPACE_KEY}"}))
    assert outcome.status == DOWN
    assert "header" in outcome.detail.lower() and "***" in outcome.detail
    assert [p for p in _pieces(token) if p in outcome.detail] == [], outcome.detail
    assert http_server.requests == []
