"""Collected input violations: every bad field named by path before anything is answered."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    description: str


@dataclass(slots=True)
class Violations:
    """Collects every problem of a request before anything is answered."""

    items: list[Violation] = field(default_factory=list)

    def add(self, path: str, description: str) -> None:
        self.items.append(Violation(path, description))

    def __bool__(self) -> bool:
        return bool(self.items)
