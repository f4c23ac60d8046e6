"""Config values as a page may show them: secrets replaced by a mask (the dashboard, the admin)."""

from __future__ import annotations

import re
from typing import Any

MASK = "••••••"
_SECRET_KEY = re.compile(r"pass|secret|token|auth|cookie|credential|api_?key|private", re.IGNORECASE)
# The look-behind starts a scheme only at a run's first letter (the same matches; linear on long words).
_URL_CREDENTIALS = re.compile(r"(?<![a-z])([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_DSN_PASSWORD = re.compile(r"\b(password|pwd)\s*=\s*\S+", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"([?&](?:token|key|api_key|apikey|secret|password|sig|signature)=)[^&#\s]+", re.IGNORECASE)


def mask(value: Any, key: str = "", *, inside: str = "") -> Any:
    """A config value as the dashboard may show it: secrets replaced by a mask.

    Masked: every value of `headers` and `env` tables, keys that name a secret, anything that
    uses `${VAR}`, credentials in URLs/DSNs and secret-looking query parameters. A `*_env` key
    holds only the *name* of a variable, which is not a secret.
    """
    if isinstance(value, dict):
        return {k: mask(v, k, inside=key) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key, inside=inside) for v in value]
    if not isinstance(value, str):
        return MASK if _SECRET_KEY.search(key) and not key.endswith("_env") else value
    if inside in ("headers", "env") or "${" in value or (_SECRET_KEY.search(key) and not key.endswith("_env")):
        return MASK
    value = _URL_CREDENTIALS.sub(rf"\1{MASK}@", value)
    value = _DSN_PASSWORD.sub(rf"\1={MASK}", value)
    return _SECRET_QUERY.sub(rf"\1{MASK}", value)
