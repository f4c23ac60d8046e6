"""Fixtures for the opsportal/ tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from opsportal import db


@pytest.fixture
def fast_db_hardening(settings, tmp_path) -> Iterator[None]:
    """Short retry backoff and breaker reset, a private var dir, no auto-recovery; the breaker closed."""
    settings.VAR_DIR = tmp_path
    settings.AUTO_RECOVERY_ENABLED = False
    settings.DB_RETRY_BACKOFF_MS = 10
    settings.DB_BREAKER_RESET_S = 1
    db.configure_breaker()
    db.breaker.close()
    yield
    db.breaker.close()


@pytest.fixture
def db_log(caplog):
    """The `opsportal` logger does not propagate: hang pytest's capture handler on it directly."""
    logger = logging.getLogger("opsportal")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
