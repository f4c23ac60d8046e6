from __future__ import annotations

from opsportal.spec import Key
from recovery.actions.base import Action, ActionResult


class HttpAction(Action):
    """Calls a URL: a service's own restart hook, or a webhook."""

    keys = {
        "url": Key("str", required=True),
        "method": Key("str", default="POST", choices=("GET", "POST", "PUT", "DELETE")),
        "headers": Key("dict[str]", default={}),
        "body": Key("text"),
        "expect_status": Key("list[int]", minimum=100, maximum=599),
    }

    def run(self) -> ActionResult:
        raise NotImplementedError("the recovery engine issue implements this")
