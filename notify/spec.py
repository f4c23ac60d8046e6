"""The keys of the `[[channel]]` table of the config file; notify.models builds its validators from them."""

from __future__ import annotations

from core.spec import Key
from health.spec import REMIND_EVERY

CHANNEL_KEYS: dict[str, Key] = {
    "name": Key("slug", required=True),
    "url": Key("str", required=True),
    "events": Key("list[str]", default=[]),
    "services": Key("list[str]", default=[]),
    "remind_every": REMIND_EVERY,
    "enabled": Key("bool", default=True),
}
