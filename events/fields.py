"""Constrained field types shared by the message contracts."""

from __future__ import annotations

from typing import Annotated

from annotated_types import MaxLen, MinLen

Label = Annotated[str, MinLen(1), MaxLen(200)]
"""A short human-facing name or title."""

Principal = Annotated[str, MinLen(1), MaxLen(200)]
"""Who someone is (a user, API key or persona id), as in `Actor.id`."""

Reason = Annotated[str, MinLen(1), MaxLen(4_000)]
"""A short human explanation: why something was rejected, failed or withdrawn."""

Text = Annotated[str, MaxLen(100_000)]
"""Free text: a prompt, instructions, a body, an output."""
