"""PostgreSQL enum types, named as Prisma names them."""

from __future__ import annotations

import enum

from sqlalchemy import Enum


def pg_enum(python_enum: type[enum.Enum], name: str) -> Enum:
    """A native PostgreSQL enum type `"<name>"` whose labels are the members' values."""
    return Enum(
        python_enum,
        name=name,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )
