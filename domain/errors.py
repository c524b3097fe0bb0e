"""The root of every domain error: a stable code for machines and a reason for people."""

from __future__ import annotations

FORBIDDEN = 403  # the actor may not do this: not an approver, not the owner, system only
CONFLICT = 409  # the rule holds against the state: wrong status, exists already, voted twice
UNPROCESSABLE = 422  # input the command cannot mean: nothing to edit, unknown id, no steps


class DomainError(Exception):
    """A command broke a rule of the domain; nothing changed.

    `code` is stable (e.g. "plan-not-draft") and becomes the problem type of an HTTP 4xx or the
    `rejected` status of a command; `reason` explains this occurrence to a person. `status`
    is that problem's HTTP status: `CONFLICT` (409) unless the raise site or the class says
    `UNPROCESSABLE` (422) or `FORBIDDEN` (403: the actor may not, whatever the state).
    """

    status: int = CONFLICT

    def __init__(self, code: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        if status is not None:
            self.status = status
