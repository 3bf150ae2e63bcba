"""Rendering errors as RFC 9457 problem+json, once, for the whole API.

Every error body has `type`, `title`, `status`, `detail`, a stable `code`, and
for input errors `errors`: one entry per field with `field`, `message`, `code`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from coursehub.core.errors import StoreError, describe, field_errors

# The errors a statement can raise, as they reach a route: asyncpg's own (a statement run
# on the driver connection), SQLAlchemy's wrapping of them (a session's statement: a
# DBAPIError, a StatementError), the pool's timeout, and the socket's when no connection can
# be opened. They get handlers of their own class (`install_problem_handlers`): Starlette
# answers those in its ExceptionMiddleware and is done with them, while what reaches the
# handler of `Exception` is re-raised after the response (ServerErrorMiddleware), for the
# server to log as a crash: a caller's NUL character or a deadlock is not one.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.StatementError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

# What a request sees when PostgreSQL is down or unreachable.
DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,  # lost mid-statement on the driver
    # A connection that got the server's shutdown notice while idle, used next.
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
# The SQLSTATEs of a server going away, asyncpg's or inside SQLAlchemy's error (a session's
# connection lost mid-statement is a DBAPIError holding ConnectionDoesNotExistError, 08003):
# connection exceptions and operator intervention (shutdown, "the database system is
# starting up").
DATABASE_DOWN_STATES = ("08", "57P")


def _sqlstates(exc: Exception) -> set[str]:
    # asyncpg's own error (a statement run on the driver connection), or SQLAlchemy's
    # wrapping of it (its adapter's error, which holds asyncpg's as its cause).
    orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else None
    states = (getattr(error, "sqlstate", None) for error in (exc, orig, orig and orig.__cause__))
    return {state for state in states if isinstance(state, str)}


def _database_down(exc: Exception) -> bool:
    if isinstance(exc, DATABASE_DOWN):
        return True
    return any(state.startswith(DATABASE_DOWN_STATES) for state in _sqlstates(exc))


# SQLSTATEs of values PostgreSQL (or asyncpg, encoding them) cannot take: a NUL character
# or a lone surrogate in a string, a number out of the column's range. Only a caller's
# input reaches a query as such a value, so they are the caller's 422, not our 500.
UNSTORABLE_VALUE_STATES = frozenset({"22000", "22001", "22003", "22021", "22P05"})


def _unstorable_value(exc: Exception) -> bool:
    return bool(_sqlstates(exc) & UNSTORABLE_VALUE_STATES)


# SQLSTATE class 40, transaction rollback: a deadlock with a concurrent request, or a
# serialization failure. PostgreSQL undid the whole transaction, so nothing of the request
# was saved and the same request can simply be sent again: the caller's 409, not our 500.
TRANSACTION_CONFLICT_CLASS = "40"


def _transaction_conflict(exc: Exception) -> bool:
    return any(state.startswith(TRANSACTION_CONFLICT_CLASS) for state in _sqlstates(exc))


# A statement PostgreSQL cancelled because it ran or waited too long: 57014 query_canceled
# (`statement_timeout`, or an operator's pg_cancel_backend) and 55P03 lock_not_available
# (`lock_timeout`). The store sets neither, an operator may (on the role or the database):
# a busy database, not a fault of ours; the request's transaction is rolled back whole, so
# it can be sent again a little later.
DATABASE_TIMEOUT_STATES = frozenset({"57014", "55P03"})


def _database_timeout(exc: Exception) -> bool:
    return bool(_sqlstates(exc) & DATABASE_TIMEOUT_STATES)


logger = logging.getLogger("coursehub")

# Seconds a client is asked to wait before sending again a request the database could not
# serve (down, or too busy).
DATABASE_RETRY_AFTER = "5"


PROBLEM_JSON = "application/problem+json"


class ProblemFieldError(BaseModel):
    field: str
    message: str
    code: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemFieldError] = []


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://coursehub.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    if extra:
        # An extra member never replaces a standard one: `status` is the HTTP status (RFC
        # 9457), which a client may read instead of the response's; an order's is
        # `orderStatus`.
        body.update((name, value) for name, value in extra.items() if name not in body)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def responses(*errors: type[StoreError]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the problem documents it can answer with."""
    by_status: dict[int, list[type[StoreError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": "; ".join(f"`{e.code}`: {e.title}" for e in group),
        }
        for status, group in by_status.items()
    }


VALIDATION_PROBLEM = (
    "`validation_failed`: The request is not valid (one entry per field in `errors`)"
)
MALFORMED_PROBLEM = "`malformed_request`: The body could not be read (not UTF-8 text)"
MEDIA_TYPE_PROBLEM = "`unsupported_media_type`: The body was not sent as application/json"
DATABASE_PROBLEM = (
    "`database_unavailable` or `database_timeout`: the database could not serve the request "
    "(nothing of it was saved); send it again after Retry-After seconds"
)
TOO_LARGE_PROBLEM = (
    "`content_too_large`: The body is larger than COURSEHUB_MAX_REQUEST_BODY_BYTES (1 MiB)"
)
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

# The `openapi_extra` key of a route that reads its raw body itself (the payment webhook,
# whose signature is over the bytes): FastAPI parses no body for it, so it never answers
# `malformed_request`, `unsupported_media_type` or `validation_failed` (a body too large is
# refused before any route, so 413 it can). Kept in the document: an OpenAPI extension,
# which tells a reader the body is taken byte for byte.
RAW_BODY = "x-raw-body"


def document_problem_responses(app: FastAPI) -> None:
    """Make the OpenAPI document say what an error response is: problem+json only.

    A route's `responses(...)` (a `Problem` model and problem+json content) makes FastAPI
    document the model under application/json too; and FastAPI documents every 422 as its
    own `HTTPValidationError` in application/json, while the API answers problem+json with
    `validation_failed` and `errors` (`install_problem_handlers`). A client generated from
    the document would otherwise expect bodies it never gets."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI's, kept as app.openapi_schema: rewritten in place
        components = document.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in components:
            schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components["Problem"] = schema
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for path, item in document.get("paths", {}).items():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                raw_body = bool(operation.get(RAW_BODY))
                if path.startswith("/api/"):  # every route that uses the database
                    operation["responses"].setdefault(
                        "503", {"description": DATABASE_PROBLEM, "content": {PROBLEM_JSON: {}}}
                    )
                if "requestBody" in operation:
                    if not raw_body:
                        # A body that is not UTF-8 text. (One that is text but not JSON is a
                        # 422 `validation_failed`, field `body`, code `json_invalid`:
                        # core/errors.py.)
                        operation["responses"].setdefault(
                            "400",
                            {"description": MALFORMED_PROBLEM, "content": {PROBLEM_JSON: {}}},
                        )
                        operation["responses"].setdefault(
                            "415",
                            {"description": MEDIA_TYPE_PROBLEM, "content": {PROBLEM_JSON: {}}},
                        )
                    operation["responses"].setdefault(  # core/body_limit.py
                        "413", {"description": TOO_LARGE_PROBLEM, "content": {PROBLEM_JSON: {}}}
                    )
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if PROBLEM_JSON in content:
                        content.pop("application/json", None)
                        content[PROBLEM_JSON] = problem
                        if (
                            status == "422"
                            and not raw_body
                            and "validation_failed" not in response["description"]
                        ):
                            response["description"] = (
                                VALIDATION_PROBLEM + "; " + response["description"]
                            )
                    elif status == "422":
                        response["description"] = VALIDATION_PROBLEM
                        response["content"] = {PROBLEM_JSON: problem}
        text = json.dumps(document.get("paths", {}))
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            if f"#/components/schemas/{name}" not in text:
                components.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        headers = dict(exc.headers)
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return problem_response(
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            errors=[asdict(e) for e in exc.errors],
            extra=exc.extra,
            headers=headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_not_sent_as_json(request, exc):
            return problem_response(
                415,
                "unsupported_media_type",
                "The body must be JSON",
                f"the body was sent as {request.headers.get('content-type') or 'no type'}; "
                "send it as JSON, with Content-Type: application/json",
            )
        errors = field_errors(exc.errors())
        return problem_response(
            422,
            "validation_failed",
            "The request is not valid",
            describe(errors),
            errors=[asdict(e) for e in errors],
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            400: "malformed_request",  # e.g. a body that is not UTF-8
            401: "not_authenticated",
            404: "not_found",
            405: "method_not_allowed",
            413: "content_too_large",
        }
        return problem_response(
            exc.status_code,
            codes.get(exc.status_code, f"http_{exc.status_code}"),
            str(exc.detail),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    # A database error none of `_database_problem`'s rules recognises (SQL of ours that
    # fails: a bug) is still our 500, logged with its traceback here: nothing re-raises it.
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        return _database_problem(request, exc) or _internal_error(request, exc)

    for error_class in DATABASE_ERRORS:
        app.add_exception_handler(error_class, database_error)

    # Only for what no handler above takes: Starlette re-raises it after this response,
    # and the server logs it too.
    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(request, exc)


def _database_problem(request: Request, exc: Exception) -> JSONResponse | None:
    """The answer to a database error that is not a fault of ours; None for one that is."""
    where = f"{request.method} {request.url.path}"
    if _database_down(exc):
        logger.warning("database unavailable on %s: %s", where, exc)
        return problem_response(
            503,
            "database_unavailable",
            "The database is unavailable",
            "The store cannot reach its database right now; try again shortly.",
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )
    if _database_timeout(exc):
        logger.warning("database timeout on %s: %s", where, exc)
        return problem_response(
            503,
            "database_timeout",
            "The database took too long",
            "the database could not serve the request in time (a statement or lock timeout), "
            "and it was undone whole: nothing of it was saved; try again shortly",
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )
    if _transaction_conflict(exc):
        logger.warning("transaction conflict on %s: %s", where, exc)
        return problem_response(
            409,
            "transaction_conflict",
            "The request collided with a concurrent one",
            "another request changed the same data at the same moment, and this one was "
            "undone whole: nothing of it was saved; send it again",
        )
    if _unstorable_value(exc):
        logger.info("unstorable value on %s: %s", where, exc)
        return problem_response(
            422,
            "unstorable_value",
            "A value cannot be stored",
            "a value in the request cannot be stored: text must not contain NUL characters "
            "or unpaired surrogates, and numbers must fit their field",
        )
    return None


def _body_not_sent_as_json(request: Request, exc: RequestValidationError) -> bool:
    """A JSON body sent under another type (`curl -d` sends form-urlencoded): FastAPI does
    not parse it, and its body fails validation as a whole ("Input should be a valid
    dictionary"), which reads as if the JSON were wrong. Told apart only once validation
    has failed, so a route reading its raw body (the payment webhook) takes any type."""
    sent = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not sent or media_type == "application/json" or media_type.endswith("+json"):
        return False  # no body (422: the fields it lacks), or a JSON one that is wrong
    return any(tuple(error.get("loc", ()))[:1] == ("body",) for error in exc.errors())


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "internal_error", "Internal error", "Something went wrong on our side."
    )
