"""Upcasters: turn an old schema version's payload into the next version's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class Upcasters:
    """A chain of `(type, from_version) -> function` steps applied on read."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, message_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorate a function that lifts `message_type` from `from_version` to the next."""

        def add(step: Upcaster) -> Upcaster:
            key = (message_type, from_version)
            if key in self._steps:
                raise ValueError(f"upcaster for {message_type} v{from_version} registered twice")
            self._steps[key] = step
            return step

        return add

    def has(self, message_type: str, from_version: int) -> bool:
        """Whether there is a step from `from_version` for `message_type`."""
        return (message_type, from_version) in self._steps

    def step(self, message_type: str, from_version: int, payload: Payload) -> Payload:
        """Apply one step."""
        return self._steps[(message_type, from_version)](payload)


upcasters = Upcasters()
