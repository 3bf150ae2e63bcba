"""`field_errors`: which field an input error names, a model validator's included."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from coursehub.core.errors import FieldError, FieldValueError, field_errors


class Window(BaseModel):
    start: int
    end: int

    @model_validator(mode="after")
    def _in_order(self) -> Window:
        if self.start >= self.end:
            raise FieldValueError("end", "must be after start")
        return self


class Whole(BaseModel):
    start: int

    @model_validator(mode="after")
    def _never(self) -> Whole:
        raise ValueError("not this one")


class Plan(BaseModel):
    windows: list[Window]


def errors_of(model: type[BaseModel], data: Any, *, source: str | None = None) -> list[Any]:
    """pydantic's errors for `data`, located as FastAPI locates them (under the source)."""
    with pytest.raises(ValidationError) as raised:
        model.model_validate(data)
    prefix = (source,) if source else ()
    return [{**error, "loc": prefix + tuple(error["loc"])} for error in raised.value.errors()]


def test_a_model_validator_names_the_field_it_raises_for() -> None:
    found = field_errors(errors_of(Window, {"start": 2, "end": 1}, source="body"))

    assert found == [FieldError("end", "Value error, must be after start", "value_error")]


def test_the_field_is_under_the_models_own_location() -> None:
    plan = {"windows": [{"start": 1, "end": 2}, {"start": 5, "end": 3}]}

    found = field_errors(errors_of(Plan, plan, source="body"))

    assert [error.field for error in found] == ["windows.1.end"]


@pytest.mark.parametrize("source", ["query", "body"])
def test_an_error_of_the_whole_input_names_its_source(source: str) -> None:
    found = field_errors(errors_of(Whole, {"start": 1}, source=source))

    assert [error.field for error in found] == [source]


def test_without_a_source_the_whole_input_is_the_body() -> None:
    """A model validated outside a request (the payment webhook's event) reads a body."""
    found = field_errors(errors_of(Whole, {"start": 1}))

    assert [error.field for error in found] == ["body"]


def test_a_field_validators_location_is_unchanged() -> None:
    found = field_errors(errors_of(Window, {"start": "x", "end": 1}, source="query"))

    assert [(error.field, error.code) for error in found] == [("start", "int_parsing")]
