"""Fixtures for the opsportal/ tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.core.outage_support import quick_db_hardening


@pytest.fixture
def fast_db_hardening(settings, tmp_path) -> Iterator[None]:
    """Short retry backoff and breaker reset, a private var dir, no auto-recovery; the breaker closed."""
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path):
        yield


@pytest.fixture
def db_log(caplog):
    """The `opsportal` logger does not propagate: hang pytest's capture handler on it directly."""
    logger = logging.getLogger("opsportal")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
