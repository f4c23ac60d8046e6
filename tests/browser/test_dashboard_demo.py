"""The issue's "done when": the demo config with one service broken; the overview says exactly which,
since when and what was attempted, and a staff user recovers it with two clicks — the real engine
restarting a real process."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command

from core.http import session as http_probe_session
from core.procs import ProcRef, find_processes, stop
from health.models import Service
from health.runner import run_round
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.browser.conftest import after_background_recovery, login, screenshot
from tests.dashboard.dashboard_fixtures import threads_may_read

pytestmark = pytest.mark.browser
__all__ = ["threads_may_read"]


@pytest.fixture
def demo(transactional_db, live_server, tcp_server, tmp_path, settings):
    """examples/demo.toml, pointed at this test's servers; the demo worker is not running (broken)."""
    settings.AUTO_RECOVERY_ENABLED = False
    call_command("importconfig", "examples/demo.toml")
    # A marker of this test's own, so it never touches a demo worker someone else runs.
    marker = f"opsportal-demo-worker-{uuid.uuid4().hex[:8]}"
    worker = Service.objects.get(name="demo-worker")
    worker.settings = {**worker.settings, "cmdline_contains": marker}
    worker.save()
    action = RecoveryAction.objects.get(service=worker)
    argv = [part.replace("opsportal-demo-worker", marker) for part in action.settings["argv"]]
    action.settings = {**action.settings, "argv": argv, "log_file": str(tmp_path / "worker.log")}
    action.save()
    Service.objects.filter(name="portal").update(settings={"url": live_server.url + "/health/live"})
    Service.objects.filter(name="ssh").update(settings={"host": "127.0.0.1", "port": tcp_server.port})
    yield marker
    # The `portal` probe's pooled keep-alive connection to the live server: closed now, not at exit.
    http_probe_session().close()
    started = [a.action_data.get("started") for a in RecoveryAttempt.objects.filter(service=worker)]
    refs = [ProcRef(s["pid"], s["createTime"]) for s in started if s]
    stop([p for p in (r.process() for r in refs) if p] + find_processes(cmdline_contains=marker), grace=2)
    assert find_processes(cmdline_contains=marker) == []


def test_it_shows_the_broken_demo_service_and_recovers_it_with_two_clicks(
    page, staff_user, demo, threads_may_read, settings
):
    settings.DASHBOARD_REFRESH_SECONDS = 1  # the live partial shows the background recovery's outcome
    services = list(Service.objects.filter(enabled=True))
    for _ in range(2):
        run_round(services)
    down = sorted(Service.objects.filter(status="down").values_list("name", flat=True))
    assert down == ["demo-worker"]

    login(page, staff_user)
    assert page.locator(".card.st-down").count() == 1
    card = page.locator("#svc-demo-worker")
    assert "down for" in card.inner_text()  # since when
    assert f"0 running for cmdline contains '{demo}' (need 1)" in card.inner_text()  # the last error
    assert page.locator(".incident").count() == 1
    screenshot(page, "demo-broken-1280.png")

    page.get_by_role("link", name="Recover demo-worker…").click()
    page.get_by_role("button", name="Confirm recovery").click()
    after_background_recovery(page, "demo-worker")
    assert "restart_process" in page.locator("section[aria-labelledby=att-h]").inner_text()
    assert len(find_processes(cmdline_contains=demo)) == 1

    page.goto(page.base + "/")
    assert page.locator(".card.st-down").count() == 0
    attempts = page.locator("section[aria-labelledby=att-h]").inner_text()
    assert "demo-worker" in attempts and "succeeded" in attempts and "manual" in attempts
