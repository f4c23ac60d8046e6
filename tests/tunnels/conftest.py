from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from core import procs
from tests.servers import free_port
from tunnels import check, watchdog
from tunnels.models import Tunnel

FAKE = Path(__file__).with_name("fake_cloudflared.py")


@dataclass
class FakeTunnel:
    """A Tunnel row whose command is the fake connector on its own port."""

    tunnel: Tunnel
    port: int
    control: Path  # the not-ready control file
    marker: str  # a command-line substring only this tunnel's connectors have

    def processes(self) -> list[psutil.Process]:
        return procs.find_processes(cmdline_contains=self.marker)

    def reload(self) -> Tunnel:
        self.tunnel.refresh_from_db()
        return self.tunnel

    def start(self) -> int:
        """Bring the connector up through the watchdog (the first check starts it); returns its pid."""
        result = watchdog.check_now(self.reload())
        assert result is not None and result.restarted, result
        return result.pid or 0


def zombie_children(pids: Iterable[int] | None = None) -> list[psutil.Process]:
    """Zombie children of this process; with `pids`, only those (other tests' leftovers are theirs)."""
    wanted = set(pids) if pids is not None else None
    return [
        c
        for c in psutil.Process().children(recursive=True)
        if (wanted is None or c.pid in wanted) and _status(c) == psutil.STATUS_ZOMBIE
    ]


def _status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return "gone"


def connector_pids(tunnel: Tunnel) -> set[int]:
    """Every connector pid the watchdog recorded for the tunnel."""
    return {pid for pid in tunnel.events.values_list("pid", flat=True) if pid} | ({tunnel.pid} if tunnel.pid else set())


def assert_clean(fake: FakeTunnel) -> None:
    """Stop the tunnel's connectors and assert none is left running, orphaned or a zombie."""
    procs.stop(fake.processes(), grace=3)
    check.reap_started()
    assert fake.processes() == []
    assert zombie_children(connector_pids(fake.reload())) == []


@pytest.fixture
def make_tunnel(tmp_path: Path) -> Iterator[Callable[..., FakeTunnel]]:
    made: list[FakeTunnel] = []

    def make(*fake_args: str, name: str = "edge", ready: bool = True, **fields: Any) -> FakeTunnel:
        port = free_port()
        marker = f"{FAKE.name} --port {port} "
        control = tmp_path / f"{name}-not-ready"
        command = [sys.executable, str(FAKE), "--port", str(port), "--not-ready-file", str(control), *fake_args]
        values: dict[str, Any] = {
            "command": command,
            "process_match": marker,
            "ready_url": f"http://127.0.0.1:{port}/ready" if ready else "",
            "check_interval": 30,
            "startup_timeout": 5,
            "settle_seconds": 0.3,
            "log_file": str(tmp_path / f"{name}.log"),
        }
        values.update(fields)
        fake = FakeTunnel(Tunnel.objects.create(name=name, **values), port, control, marker)
        made.append(fake)
        return fake

    yield make
    # Whatever a test leaves running is stopped here, even when it failed half-way.
    for fake in made:
        procs.stop(fake.processes(), grace=3)
    check.reap_started()
