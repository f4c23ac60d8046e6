"""Test-run environment, set before Django reads its settings (loaded with `-p tests.testenv`).

OPSPORTAL_VAR_DIR and LOG_DIR (default: var/test and var/test/logs) are the run's; inside them the run takes a
directory named for its database and process (sqlite-main/, test-main/ for DATABASE_URL=…/test), each pytest-xdist
worker one inside that (sqlite-gw0/, …), and each test one inside its worker's (tests/tiers.py). So two runs on
different databases (CI's two legs at once) never share one.
"""

import os
import shutil
import signal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Tests get a throwaway key; real deployments must set SECRET_KEY (see README).
os.environ.setdefault("SECRET_KEY", "test-only-not-secret-" + "x" * 30)
os.environ.setdefault("OPSPORTAL_VAR_DIR", str(BASE_DIR / "var" / "test"))
# Log files of test runs (tunnel-monitor.log, connector output) stay out of the repo's logs/.
os.environ.setdefault("LOG_DIR", str(BASE_DIR / "var" / "test" / "logs"))

# A worker's own directories (once: processes a test starts inherit the worker's environment).
_url = os.environ.get("DATABASE_URL", "")
_database = _url.rsplit("/", 1)[-1].split("?")[0] if "://" in _url and not _url.startswith("sqlite") else "sqlite"
_worker = f"{_database}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
if os.environ.get("OPSPORTAL_TEST_DIRS_OF") != _worker:
    os.environ["OPSPORTAL_TEST_DIRS_OF"] = _worker
    for _name in ("OPSPORTAL_VAR_DIR", "LOG_DIR"):
        _dir = Path(os.environ[_name]) / _worker
        # What the worker's tests left last run (their logs were scanned then) goes.
        shutil.rmtree(_dir / "t", ignore_errors=True)
        os.environ[_name] = str(_dir)

# Started as a background job of a non-interactive shell (`make test &`, CI's concurrent legs), this process finds
# SIGINT ignored, and every process a test starts would inherit that (an ignored signal stays ignored across exec):
# a child a test stops with SIGINT would run on. Tests get the default, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
