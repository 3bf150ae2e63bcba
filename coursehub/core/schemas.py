"""What every domain's API shapes share: the base model and two input rules."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """camelCase in JSON (the database's field names), snake_case in Python; read from ORM
    objects; unknown input fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True, extra="forbid"
    )


def blank_as_none(value: Any) -> Any:
    """A blank string (a form's empty field) means "not given"."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def reject_null(value: Any) -> Any:
    """For updates: a field may be left out, but not set to null."""
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value
