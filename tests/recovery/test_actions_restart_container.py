"""The `restart_container` action against the loopback stand-in of the Docker Engine API (no Docker daemon here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.spec import ConfigError
from health.models import Service
from recovery.actions import ActionError
from recovery.actions.restart_container import RestartContainerAction
from tests.health.docker_api import Container, DockerApi


@pytest.fixture
def api() -> Iterator[DockerApi]:
    with DockerApi() as server:
        yield server


def action(api: DockerApi, timeout: float = 5, **settings: object) -> RestartContainerAction:
    cfg = RestartContainerAction.validate_settings(
        {"container": "web", "socket": api.socket, "stop_timeout": 2, **settings}, "recovery[0]"
    )
    return RestartContainerAction(cfg, service=Service(name="svc", kind="docker"), timeout=timeout)


def test_it_restarts_the_container_with_the_stop_timeout(api):
    api.containers["web"] = Container(status="exited", exit_code=137)
    result = action(api).run()
    assert result.ok is True and result.exit_code == 204
    assert result.detail == "restarted container web (stop timeout 2 s)"
    assert api.requests == [("POST", "/containers/web/restart?t=2")]
    assert api.containers["web"].restarts == [2] and api.containers["web"].status == "running"


def test_it_fails_when_docker_refuses_the_restart(api):
    api.containers["web"] = Container(status="exited", restart_status=500)
    result = action(api).run()
    assert result.ok is False and result.detail == "restart of web: HTTP 500: cannot restart container"


def test_it_raises_for_an_unknown_container_or_a_missing_socket(api, tmp_path):
    with pytest.raises(ActionError, match=r"container ghost does not exist \(Docker answered 404\)"):
        action(api, container="ghost").run()
    with pytest.raises(ActionError, match="the Docker socket .* does not exist"):
        action(api, socket=str(tmp_path / "docker.sock")).run()


def test_it_refuses_a_stop_timeout_the_action_timeout_cannot_hold(api):
    api.containers["web"] = Container(status="exited")
    with pytest.raises(ActionError, match=r"settings\.stop_timeout \(10 s\) must be less than the action's timeout"):
        action(api, timeout=5, stop_timeout=10).run()
    assert api.requests == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, r"recovery\[0\]\.container: is required"),
        ({"container": "a/b"}, r"recovery\[0\]\.container: must be a container name or id"),
        ({"container": "web", "socket": "docker.sock"}, r"recovery\[0\]\.socket: must be an absolute path"),
        ({"container": "web", "stop_timeout": -1}, r"recovery\[0\]\.stop_timeout: must be"),
    ],
)
def test_it_names_the_bad_key(given, message):
    with pytest.raises(ConfigError, match=message):
        RestartContainerAction.validate_settings(given, "recovery[0]")


@pytest.mark.django_db
def test_it_fixes_an_exited_container_verified_by_the_docker_probe(api, make_service, add_action):
    from recovery.engine import recover_services

    api.containers["web"] = Container(status="exited", exit_code=1, logs=[(2, "panic: boom")])
    svc = make_service(kind="docker", settings={"container": "web", "socket": api.socket})
    add_action(svc, "restart_container", {"container": "web", "socket": api.socket, "stop_timeout": 1})

    (result,) = recover_services([svc.name], trigger="manual")

    assert result["outcome"] == "succeeded" and result["action"] == "restart_container"
    assert api.containers["web"].restarts == [1]


@pytest.mark.django_db
def test_it_is_a_failed_attempt_when_the_container_exits_again(api, make_service, add_action):
    from recovery.engine import recover_services

    api.containers["web"] = Container(status="exited", exit_code=3, restart_to="exited")
    svc = make_service(kind="docker", settings={"container": "web", "socket": api.socket})
    add_action(svc, "restart_container", {"container": "web", "socket": api.socket, "stop_timeout": 1})

    (result,) = recover_services([svc.name], trigger="manual")

    assert result["outcome"] != "succeeded" and result["verified"] is False
    assert "not fixed: action ok, service down" in result["detail"]
    assert api.containers["web"].restarts == [1]
