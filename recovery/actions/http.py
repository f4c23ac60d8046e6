from __future__ import annotations

from typing import Any

import requests

from core.http import RedirectRefused, check_headers, request_from_cfg
from core.spec import ConfigError, Key, scrub
from recovery.actions.base import Action, ActionError, ActionResult, tail


class HttpAction(Action):
    """Calls a URL: a service's own restart hook, or a webhook. Success is an expected status."""

    keys = {
        "url": Key("str", required=True, help="may use ${ENV_VAR}"),
        "method": Key("str", default="POST", choices=("GET", "POST", "PUT", "DELETE")),
        "headers": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
        "body": Key("text"),
        "expect_status": Key("list[int]", minimum=100, maximum=599, help="default: any 2xx"),
        # A hook's redirect is its answer unless asked otherwise; followed, headers never cross origins.
        "follow_redirects": Key("redirects", default=False, help='false, true or "same-origin"'),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_headers(cleaned.get("headers"), where)
        return cleaned

    def run(self) -> ActionResult:
        cfg = self.cfg
        try:
            # The probes' pooled session; a hook that answers slowly costs at most the timeout.
            response = request_from_cfg(cfg, self.secrets, timeout=self.timeout)
        except ConfigError as exc:
            raise ActionError(scrub(f"config error: {exc}", self.secrets)) from None
        except RedirectRefused as exc:
            raise ActionError(scrub(str(exc), self.secrets)) from None
        except requests.exceptions.Timeout:
            raise ActionError(f"no answer within {self.timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            # The exception text carries the URL, which may hold a secret.
            raise ActionError(scrub(f"request failed: {type(exc).__name__}", self.secrets)) from None
        status = response.status_code
        expected = cfg["expect_status"]
        ok = status in expected if expected else 200 <= status < 300
        # Scrubbed whole, then cut: a secret across the cut would otherwise leave its tail behind.
        body = tail(scrub(response.text, self.secrets), lines=5, chars=300)
        want = ", ".join(map(str, expected)) if expected else "2xx"
        detail = f"{cfg['method']} answered HTTP {status} (expected {want})" + (f": {body}" if body else "")
        return ActionResult(ok, detail, exit_code=status, secrets=self.secrets)
