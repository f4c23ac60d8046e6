"""A registry of kinds: one module a kind in a package, the registry key is the module name.

Used for probe kinds (`health/probes/`) and recovery action kinds (`recovery/actions/`),
as Healthchecks' integrations and Uptime Kuma's monitor types do it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    def __init__(self, package: str, base: T) -> None:
        self.package = package
        self.base = base
        self._kinds: dict[str, T] | None = None

    def _load(self) -> dict[str, T]:
        if self._kinds is None:
            kinds: dict[str, T] = {}
            pkg = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                if info.name.startswith("_") or info.name == "base":
                    continue
                module = importlib.import_module(f"{self.package}.{info.name}")
                found = [
                    obj
                    for obj in vars(module).values()
                    if isinstance(obj, type)
                    and issubclass(obj, self.base)
                    and obj is not self.base
                    and obj.__module__ == module.__name__
                ]
                if len(found) != 1:
                    raise RuntimeError(f"{module.__name__} must define exactly one {self.base.__name__}")
                found[0].kind = info.name
                kinds[info.name] = found[0]
            self._kinds = kinds
        return self._kinds

    def get(self, kind: str) -> T:
        try:
            return self._load()[kind]
        except KeyError:
            raise KeyError(kind) from None

    def kinds(self) -> list[str]:
        return list(self._load())

    def __contains__(self, kind: object) -> bool:
        return kind in self._load()

    def choices(self) -> list[tuple[str, str]]:
        return [(k, k) for k in self._load()]
