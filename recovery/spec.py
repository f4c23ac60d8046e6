"""The keys of a `[[service.recovery]]` table, and the bounds the RecoveryAction columns share."""

from __future__ import annotations

from core.spec import Key

RECOVERY_KEYS: dict[str, Key] = {
    "kind": Key("str", required=True),
    "timeout": Key("number", default=60, minimum=0.1, maximum=3600),
    # A day at most: the backoff doubles it up to its cap, and the lock is held for none of it.
    "cooldown": Key("int", default=300, minimum=0, maximum=86400),
    # The re-probe waits this long holding the service's recovery claim.
    "verify_delay": Key("number", default=5, minimum=0, maximum=600),
    "escalate_after": Key("int", default=3, minimum=1, maximum=100),
    "auto": Key("bool"),
    "enabled": Key("bool", default=True),
}
