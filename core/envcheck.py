"""Environment variables a configuration needs that are not set (issue 15 item 13).

A value may use `${VAR}` (expanded when it is used: a probe, an action, a tunnel start, a send), and a
`*_env` key names the variable that holds a secret (`dsn_env = "PG_DSN"`). One unset is no outage but
a configuration to fix: `importconfig` warns and still imports, `doctor` reports it, and a probe that
meets it is `misconfigured`. The environment and `.env` are read when the portal starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.spec import env_refs


def unset_fix(variable: str) -> str:
    """What to do about an unset variable: one wording for importconfig, doctor and the probe detail."""
    return f"set {variable} in the environment or .env, then restart the portal (both are read at start)"


@dataclass(frozen=True)
class Unset:
    """One variable a table needs that is not set: `where` names the table, `key` the key in it."""

    where: str
    key: str
    variable: str
    named: bool  # by a `*_env` key (True) or used as `${VAR}` (False)

    @property
    def fix(self) -> str:
        return unset_fix(self.variable)

    def warning(self) -> str:
        """importconfig's line: table, key and variable."""
        return f"warning: {self.where}.{self.key}: environment variable {self.variable} is not set ({self.fix})"

    def problem(self) -> str:
        """doctor's words."""
        return f"{self.where}: {self.key} {'names' if self.named else 'uses'} {self.variable}"


def _is_set(name: str, *, named: bool) -> bool:
    # A `*_env` variable set to "" is as good as unset (core.spec.env_value refuses it).
    return bool(os.environ.get(name)) if named else name in os.environ


def _walk(value: Any, path: str) -> list[tuple[str, str, bool]]:
    found: list[tuple[str, str, bool]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if str(key).endswith("_env") and isinstance(item, str) and item:
                if not _is_set(item, named=True):
                    found.append((sub, item, True))
            else:
                found += _walk(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _walk(item, f"{path}[{i}]")
    elif isinstance(value, str):
        found += [(path, name, False) for name in dict.fromkeys(env_refs(value)) if not _is_set(name, named=False)]
    return found


def unset_in(where: str, values: Any) -> list[Unset]:
    """The unset variables a table's values need, each with the key that needs it."""
    return [Unset(where, key, variable, named) for key, variable, named in _walk(values, "")]


def unset_in_document(doc: Mapping[str, Any]) -> list[Unset]:
    """Every table of a parsed config file: `service[1] (web)`, its `recovery[0].url` key, and so on."""
    found: list[Unset] = []
    for table, rows in doc.items():
        if not isinstance(rows, list):
            continue
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                name = row.get("name")
                found += unset_in(f"{table}[{i}]" + (f" ({name})" if isinstance(name, str) else ""), row)
    return found
