"""Upcasters: turn an old schema version's payload into the next version's."""

from __future__ import annotations

import re
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


_NAMESPACED = ("key:", "user:", "persona:", "system:", "legacy:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PRINCIPAL_KEYS = frozenset(
    {"approver", "approvers", "approvals", "assignee", "worker", "recipient", "rejected_by"}
)


def legacy_principal(name: str) -> str:
    r"""A principal written before ids were namespaced (`alice`) reads as `legacy:alice`.

    Control characters, which principal ids never hold, read as `\xNN` escapes.
    """
    if name.startswith(_NAMESPACED):
        return name
    return "legacy:" + _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", name)


def qualify_principals(payload: Any) -> Any:  # noqa: ANN401  (a JSON value)
    """`payload` with every principal under a principal-holding key namespaced."""
    if isinstance(payload, list):
        return [qualify_principals(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _PRINCIPAL_KEYS and isinstance(value, str):
            out[key] = legacy_principal(value)
        elif key in _PRINCIPAL_KEYS and isinstance(value, list):
            out[key] = [legacy_principal(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = qualify_principals(value)
    return out


def namespaced_v1(
    chain: Upcasters,
    message_type: str,
    **defaults: Any,  # noqa: ANN401
) -> None:
    """Register `message_type`'s v1 -> v2 step: principals namespaced, new fields defaulted.

    A field version 2 added is null in an upcast v1 payload unless `defaults` names it (the
    v1 event did not carry it, and an upcaster does not read state to guess it).
    """

    @chain.register(message_type, 1)
    def lift(payload: Payload) -> Payload:
        qualified: Payload = qualify_principals(payload)
        return {**defaults, **qualified}
