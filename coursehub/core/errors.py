"""One error family for the whole store.

Services raise `StoreError` subclasses (each domain keeps its own in
`<domain>/errors.py`); the API renders them once, as RFC 9457 problem+json with a
stable machine-readable `code`, and the CLI prints them as one line. Nothing below
a router raises `HTTPException`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldError:
    """What is wrong with one input field. `field` is a dotted path, e.g. `items.0.price`."""

    field: str
    message: str
    code: str = "invalid"


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its name when it has none): what a
    one-line error shows of a library's many-line message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# Where pydantic says a request's input came from: the client knows where it sent what.
_INPUT_SOURCES = ("body", "query", "path", "header", "cookie")


class FieldValueError(ValueError):
    """A validator's complaint about one field, raised where the validator sees the whole
    input (a model validator checking fields against each other). pydantic places such an
    error at the model, which names no field, and keeps the exception in the error's
    `ctx["error"]`; `field_errors` adds `field` to the location, so the client is told the
    field at fault. `field` is the name the client sends: `endDate`, `to`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """pydantic's validation errors (`exc.errors()`) as FieldErrors: the location dotted,
    without the source prefix (`body.items.0` → `items.0`), plus the field a
    `FieldValueError` names; an error of the whole input, naming no field, is its source's
    (`body`, `query`)."""
    found = []
    for error in errors:
        if error.get("type") == "json_invalid":
            found.append(_json_invalid(error))
            continue
        parts = [str(part) for part in error.get("loc", ())]
        # Without a source (a model validated outside a request: the webhook's event), the
        # input is a body.
        source = "body"
        if parts and parts[0] in _INPUT_SOURCES:
            source, parts = parts[0], parts[1:]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldValueError):
            parts.append(cause.field)
        found.append(
            FieldError(
                field=".".join(parts) or source,
                message=str(error.get("msg", "invalid")),
                code=str(error.get("type", "invalid")),
            )
        )
    return found


def _json_invalid(error: Mapping[str, Any]) -> FieldError:
    """A body that is not JSON. FastAPI's location is `("body", offset)`: the offset of the
    syntax error is no field, so the field is the whole body and the offset goes in the
    message."""
    loc = tuple(error.get("loc", ()))
    reason = str((error.get("ctx") or {}).get("error") or error.get("msg") or "JSON decode error")
    where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    return FieldError(field="body", message=f"not valid JSON: {reason}{where}", code="json_invalid")


def describe(errors: Iterable[FieldError]) -> str:
    """The one-line detail naming every field error."""
    return "; ".join(f"{error.field}: {error.message}" for error in errors)


@dataclass
class StoreError(Exception):
    """Base of every error the store reports to a caller.

    Subclasses set `status`, `code` and `title`; an instance adds the specifics.
    """

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After on a 429

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def __str__(self) -> str:
        return self.detail


class ValidationFailed(StoreError):
    status = 422
    code = "validation_failed"
    title = "The request is not valid"


class NotFound(StoreError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(StoreError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unauthorized(StoreError):
    status = 401
    code = "not_authenticated"
    title = "Not authenticated"


class Forbidden(StoreError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class BadCursor(StoreError):
    status = 400
    code = "invalid_cursor"
    title = "The pagination cursor is not valid"


class DatabaseUnavailable(StoreError):
    status = 503
    code = "database_unavailable"
    title = "The database is unavailable"


class ConfigurationError(StoreError):
    """Wrong settings: a bad DATABASE_URL, a missing tool, an insecure secret."""

    status = 500
    code = "configuration_error"
    title = "The store is misconfigured"
