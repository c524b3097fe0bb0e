"""Constrained field types shared by the message contracts."""

from __future__ import annotations

from typing import Annotated

from annotated_types import MaxLen, MinLen
from pydantic import StringConstraints

Label = Annotated[str, MinLen(1), MaxLen(200)]
"""A short human-facing name or title."""

PRINCIPAL_PATTERN = r"^(key|user|persona|system|legacy):[^\x00-\x1f\x7f]+$"

Principal = Annotated[str, StringConstraints(max_length=2_100, pattern=PRINCIPAL_PATTERN)]
"""Who someone is: a principal id, `Actor.principal` (`key:<id>`, `user:<issuer>/<sub>`,
`persona:<id>`, `system:<component>`). `legacy:<name>` is what an id written before ids were
namespaced reads as (v1 events, upcast; stored state, migrated)."""

Reason = Annotated[str, MinLen(1), MaxLen(4_000)]
"""A short human explanation: why something was rejected, failed or withdrawn."""

Text = Annotated[str, MaxLen(100_000)]
"""Free text: a prompt, instructions, a body, an output."""
