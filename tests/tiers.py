"""Test tiers, per-test isolation for parallel runs (pytest-xdist) and the slow-test budget (`-p tests.tiers`).

Tiers, by marker (registered in pyproject.toml, `--strict-markers`):
- unit: every test not marked `system`, `faults` or `browser` (`make test-fast`);
- `system`: tests that start processes (gunicorn, qcluster, manage.py, portals in subprocesses);
- `faults`: fault injection against a whole portal; `browser`: a real headless Chromium.
`slow("why")` marks a test that is slow on purpose; the reason is required.

Isolation (every test, autouse): the signal handlers the process had before it (restored after it); its own
VAR_DIR and LOG_DIR, in settings, in the environment (for the processes it starts) and for the portal's file log
handlers (system-monitor.log, tunnel-monitor.log), under this worker's directories (tests/testenv.py). Its log
directory is kept for tests.secretscan's end-of-run scan; its var directory is removed after it. Redis:
`worker_redis_url()` is a database number this process holds alone (leased in Redis database 0, across concurrent
runs too). PostgreSQL: pytest-django names each worker's test database (test_<name>_gw0, …); `worker_tag()` names
the databases a test makes itself. Passwords: MD5 in this process (fast; the processes a test starts keep the real
hashers).

Budget: at the end of a run, every unit-tier test slower than `slow_budget` seconds (its call plus the set-up of
its function-scoped fixtures; not the test database a worker builds once) that is not marked `slow` is listed,
never failed, so the list stays short.

Legs: `--db-tests=only` runs only the tests that use the suite's database (a second leg on another database
engine); `--db-tests=none` only those that do not. A test uses it when it asks for pytest-django's database
(`db`, `transactional_db`, `live_server`, …, or the `django_db` mark) or its module reaches the suite's database
server itself (`own_database`, `server_url`, `postgres_configured` or `requires_postgres` from tests.conftest or
tests.faults.portal).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SLOW_BUDGET_DEFAULT = 0.5
TIER_MARKERS = ("system", "faults", "browser")
DB_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}
# Names in a test module that mean its tests reach the suite's database server on their own.
DB_MODULE_NAMES = ("own_database", "server_url", "postgres_configured", "requires_postgres")

REDIS_HOST = "redis://127.0.0.1:6379"
REDIS_LEASES = f"{REDIS_HOST}/0"
REDIS_LEASE_KEY = "opsportal-tests:redis-db:{}"
REDIS_DBS = range(1, 16)  # Redis' default 16 databases; 0 holds the leases
REDIS_LEASE_S = 6 * 3600


# --- who am I --------------------------------------------------------------------------------------------------
def worker() -> str:
    """This process's xdist worker id (gw0, gw1, …), or "main" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_tag() -> str:
    """A name for what this worker makes on a shared server: the suite's database name and the worker
    (`htiers_gw0`); two runs on one server never share a suite database, so neither do their tags."""
    url = os.environ.get("DATABASE_URL", "")
    name = url.rsplit("/", 1)[-1].split("?")[0] if "://" in url else "sqlite"
    return re.sub(r"\W", "_", f"{name or 'db'}_{worker()}")[:40]


# --- Redis: a database of this process's own ------------------------------------------------------------------
_redis_db: int | None = None


def _alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit():
        return True  # another machine's: trust its expiry
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_redis_url() -> str:
    """`redis://127.0.0.1:6379/N` with N this process's alone (a lease in database 0, released at exit; a lease
    whose process is gone is taken over). Tests flush it as they like. Without Redis: database 15 (the tests that
    need Redis skip themselves)."""
    global _redis_db
    if _redis_db is None:
        _redis_db = _lease_redis_db()
    return f"{REDIS_HOST}/{_redis_db}"


def _lease_redis_db() -> int:
    import redis

    owner = f"{os.uname().nodename}:{os.getpid()}"
    try:
        client = redis.Redis.from_url(REDIS_LEASES, socket_connect_timeout=1, socket_timeout=5)
        deadline = time.monotonic() + 120
        while True:
            for number in REDIS_DBS:
                key = REDIS_LEASE_KEY.format(number)
                if client.set(key, owner, nx=True, ex=REDIS_LEASE_S):
                    atexit.register(_release, client, key, owner)
                    return number
                held = client.get(key)
                if held and not _alive(held.decode()):
                    # Taken over only if it still names the dead process (another run may be taking it too).
                    with client.pipeline() as pipe:
                        try:
                            pipe.watch(key)
                            if pipe.get(key) == held:
                                pipe.multi()
                                pipe.set(key, owner, ex=REDIS_LEASE_S)
                                pipe.execute()
                                atexit.register(_release, client, key, owner)
                                return number
                        except redis.WatchError:
                            pass
            if time.monotonic() > deadline:
                numbers = f"{REDIS_DBS.start}-{REDIS_DBS.stop - 1}"
                raise RuntimeError(f"every Redis database {numbers} is leased by a live test run")
            time.sleep(1)
    except redis.RedisError:
        return REDIS_DBS.stop - 1


def _release(client, key: str, owner: str) -> None:
    with contextlib.suppress(Exception):
        if client.get(key) == owner.encode():
            client.delete(key)


# --- markers and collection ------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("slow_budget", "seconds (setup + call) above which an unmarked unit-tier test is listed", default="")
    parser.addoption(
        "--db-tests",
        choices=("all", "only", "none"),
        default="all",
        help="run all tests (default), only those that use the suite's database, or only those that do not",
    )


def uses_database(item: pytest.Item) -> bool:
    """Whether the test touches the suite's database (so it runs on each database engine)."""
    if item.get_closest_marker("django_db") is not None:
        return True
    if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    return any(hasattr(module, name) for name in DB_MODULE_NAMES)


def is_unit(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(marker) for marker in TIER_MARKERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    bad = []
    for item in items:
        if is_unit(item) and item.get_closest_marker("slow") is None:
            # Carried to the controller's report under xdist: this test counts against the budget.
            item.user_properties.append(("budget", True))
        for mark in item.iter_markers("slow"):
            reason = mark.args[0] if mark.args else mark.kwargs.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                bad.append(item.nodeid)
    if bad:
        raise pytest.UsageError('slow needs a reason: @pytest.mark.slow("why") on ' + ", ".join(bad[:10]))
    wanted = config.getoption("--db-tests")
    if wanted == "all":
        return
    keep, drop = [], []
    for item in items:
        (keep if uses_database(item) == (wanted == "only") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- isolation -------------------------------------------------------------------------------------------------
_counter = 0


def _file_handlers(directory: Path) -> list[logging.FileHandler]:
    """The file handlers (as configured from settings.LOGGING) writing into `directory`."""
    known = logging.Logger.manager.loggerDict.values()
    loggers = [logging.getLogger(), *(v for v in known if isinstance(v, logging.Logger))]
    found: dict[int, logging.FileHandler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == directory:
                found[id(handler)] = handler
    return list(found.values())


def _repoint(handlers: list[logging.FileHandler], directory: Path) -> None:
    for handler in handlers:
        with handler.lock:
            handler.close()
            handler.baseFilename = str(directory / Path(handler.baseFilename).name)


@pytest.fixture(autouse=True)
def _private_dirs(request: pytest.FixtureRequest) -> Iterator[None]:
    """A VAR_DIR and a LOG_DIR of this test's own (settings, environment, file log handlers)."""
    global _counter
    from django.conf import settings
    from django.test import override_settings

    _counter += 1
    worker_var, worker_log = Path(os.environ["OPSPORTAL_VAR_DIR"]), Path(os.environ["LOG_DIR"])
    name = f"{_counter:05d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)[:60]}"
    (worker_var / "t").mkdir(mode=0o700, parents=True, exist_ok=True)
    var = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=worker_var / "t"))
    log = worker_log / "t" / name
    log.mkdir(mode=0o700, parents=True, exist_ok=True)
    handlers = _file_handlers(Path(settings.LOG_DIR))
    started_log = Path(settings.LOG_DIR)
    saved = {k: os.environ.get(k) for k in ("OPSPORTAL_VAR_DIR", "LOG_DIR")}
    os.environ["OPSPORTAL_VAR_DIR"], os.environ["LOG_DIR"] = str(var), str(log)
    _repoint(handlers, log)
    try:
        with override_settings(VAR_DIR=var, LOG_DIR=log):
            yield
    finally:
        _repoint(handlers, started_log)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(var, ignore_errors=True)
        with contextlib.suppress(OSError):
            log.rmdir()  # only when empty: a log is kept for the secret scan at the end of the run


# Dispositions a test may change in this process (a signal handler of the code under test, a library that ignores
# SIGINT) and that every later test in the same worker, and every process it starts, would inherit: an ignored
# signal stays ignored across exec, so a child told to stop with SIGINT would run on.
SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE", "SIGXFSZ")
    if hasattr(signal, name)
)


@pytest.fixture(autouse=True)
def _signal_dispositions() -> Iterator[None]:
    """Each test starts with the signal handlers the test process had (restored after it)."""
    saved = {number: signal.getsignal(number) for number in SIGNALS}
    yield
    if threading.current_thread() is not threading.main_thread():
        return
    for number, handler in saved.items():
        if handler is not None and signal.getsignal(number) != handler:
            signal.signal(number, handler)


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hasher() -> Iterator[None]:
    """MD5 for the users tests make (PBKDF2's 1M iterations cost ~0.3 s a login); never outside the suite."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


# --- the budget ------------------------------------------------------------------------------------------------
# A test's own cost: its call plus the set-up of its function-scoped fixtures. Not what it shares with others
# (the test database a worker's first database test would otherwise carry, a module's server, …).
_own_setup: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    started = time.perf_counter()
    yield
    if fixturedef.scope == "function":
        nodeid = request.node.nodeid
        _own_setup[nodeid] = _own_setup.get(nodeid, 0.0) + time.perf_counter() - started


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    if call.when == "call":
        # user_properties travel with the report to the xdist controller.
        item.user_properties.append(("own_setup_s", round(_own_setup.pop(item.nodeid, 0.0), 3)))


class Budget:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.over: list[tuple[float, str]] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or report.skipped:
            return
        props = dict(report.user_properties)
        took = report.duration + props.get("own_setup_s", 0.0)
        if props.get("budget") and took > self.limit:
            self.over.append((took, report.nodeid))

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.over:
            return
        title = f"slow-test budget: {len(self.over)} unit test(s) over {self.limit:g} s, not marked slow"
        terminalreporter.write_sep("=", title)
        for took, nodeid in sorted(self.over, reverse=True):
            terminalreporter.write_line(f"{took:6.2f}s  {nodeid}")
        terminalreporter.write_line('(mark it @pytest.mark.slow("why") or make it faster; the list never fails a run)')


def pytest_configure(config: pytest.Config) -> None:
    raw = config.getini("slow_budget")
    limit = float(raw) if raw else SLOW_BUDGET_DEFAULT
    # The controller (or a run without xdist) sees every report; a worker's summary goes nowhere.
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        config.pluginmanager.register(Budget(limit), "tests-tiers-budget")
