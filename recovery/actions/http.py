from __future__ import annotations

import requests

from health.probes.http import session
from opsportal.spec import ConfigError, Key, expand_env, scrub
from recovery.actions.base import Action, ActionError, ActionResult, tail


class HttpAction(Action):
    """Calls a URL: a service's own restart hook, or a webhook. Success is an expected status."""

    keys = {
        "url": Key("str", required=True, help="may use ${ENV_VAR}"),
        "method": Key("str", default="POST", choices=("GET", "POST", "PUT", "DELETE")),
        "headers": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
        "body": Key("text"),
        "expect_status": Key("list[int]", minimum=100, maximum=599, help="default: any 2xx"),
    }

    def run(self) -> ActionResult:
        cfg = self.cfg
        try:
            url = expand_env(cfg["url"], self.secrets)
            headers = {k: expand_env(v, self.secrets) for k, v in cfg["headers"].items()}
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        try:
            # The probes' pooled session; a hook that answers slowly costs at most the timeout.
            response = session().request(
                cfg["method"],
                url,
                headers=headers,
                data=cfg["body"].encode() if cfg["body"] else None,
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
            )
        except requests.exceptions.Timeout:
            raise ActionError(f"no answer within {self.timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            # The exception text carries the URL, which may hold a secret.
            raise ActionError(scrub(f"request failed: {type(exc).__name__}", self.secrets)) from None
        status = response.status_code
        expected = cfg["expect_status"]
        ok = status in expected if expected else 200 <= status < 300
        body = scrub(tail(response.text, lines=5, chars=300), self.secrets)
        want = ", ".join(map(str, expected)) if expected else "2xx"
        detail = f"{cfg['method']} answered HTTP {status} (expected {want})" + (f": {body}" if body else "")
        return ActionResult(ok, detail, exit_code=status, secrets=self.secrets)
