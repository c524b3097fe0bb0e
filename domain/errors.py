"""The root of every domain error: a stable code for machines and a reason for people."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule of the domain; nothing changed.

    `code` is stable (e.g. "plan-not-draft") and becomes the problem type of an HTTP 4xx or the
    `rejected` status of a command; `reason` explains this occurrence to a person.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
