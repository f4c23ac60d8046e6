from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from health.models import Service
from recovery.models import RecoveryAction
from tests.servers import HttpServer, Reply

PY = sys.executable


@pytest.fixture(autouse=True)
def _recovery_settings(settings: Any) -> None:
    # Tests drive recovery explicitly; a policy value a test needs is set in the test.
    settings.AUTO_RECOVERY_ENABLED = True
    settings.RECOVERY_BACKOFF_CAP = 3600
    settings.RECOVERY_MAX_AUTO_PER_HOUR = 30
    settings.RECOVERY_RESET_AFTER = 600
    settings.RECOVERY_STALE_AFTER = 900


def touch_argv(path: Path) -> list[str]:
    """A command action that fixes the flag-file target below."""
    return [PY, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()", str(path)]


@pytest.fixture
def flag_target(http_server: HttpServer, tmp_path: Path) -> tuple[HttpServer, Path]:
    """An HTTP target that is broken (503) until a flag file exists."""
    flag = tmp_path / "fixed"
    http_server.handler = lambda request: Reply(200, "ok") if flag.exists() else Reply(503, "broken")
    return http_server, flag


@pytest.fixture
def make_service() -> Callable[..., Service]:
    def make(name: str = "web", url: str = "http://127.0.0.1:9/", **fields: Any) -> Service:
        settings = fields.pop("settings", None) or {"url": url}
        fields.setdefault("kind", "http")
        fields.setdefault("timeout", 2.0)
        fields.setdefault("failure_threshold", 1)
        return Service.objects.create(name=name, settings=settings, **fields)

    return make


@pytest.fixture
def add_action() -> Callable[..., RecoveryAction]:
    def add(service: Service, kind: str = "command", settings: dict | None = None, **fields: Any) -> RecoveryAction:
        fields.setdefault("verify_delay", 0)
        fields.setdefault("timeout", 10)
        position = fields.pop("position", service.recovery_actions.count())
        return RecoveryAction.objects.create(
            service=service, kind=kind, settings=settings or {}, position=position, **fields
        )

    return add


@pytest.fixture
def spawned() -> Iterator[list[psutil.Process]]:
    """Processes a test starts (directly or through an action): all are killed afterwards."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        try:
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(5)
        except psutil.NoSuchProcess:
            pass
