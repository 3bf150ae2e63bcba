"""The OpenAPI document: no response of any route can carry a password or its hash.

The walk follows every `$ref` (and allOf/anyOf/oneOf, items, additionalProperties), so a
password nested in a component several levels down is found too. New routes are covered
without touching this test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from coursehub.app import create_app
from coursehub.core.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
REF_PREFIX = "#/components/schemas/"


@pytest.fixture(scope="module")
def document(settings: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = create_app(settings).openapi()
    return spec


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", operation


def _properties(
    document: dict[str, Any], schema: Any, where: str, seen: set[str]
) -> Iterator[tuple[str, str]]:
    """(where, property name) for every property reachable from `schema`."""
    if isinstance(schema, list):
        for item in schema:
            yield from _properties(document, item, where, seen)
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        assert ref.startswith(REF_PREFIX), ref
        name = ref.removeprefix(REF_PREFIX)
        if name not in seen:  # components may refer to themselves
            seen.add(name)
            yield from _properties(document, document["components"]["schemas"][name], name, seen)
    for name, sub in (schema.get("properties") or {}).items():
        yield where, name
        yield from _properties(document, sub, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties", "not", "contains"):
        yield from _properties(document, schema.get(key), where, seen)
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        yield from _properties(document, schema.get(key), where, seen)


def _response_properties(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for operation_name, operation in _operations(document):
        for status, response in operation.get("responses", {}).items():
            for media in (response.get("content") or {}).values():
                for where, name in _properties(
                    document, media.get("schema"), f"{operation_name} {status}", set()
                ):
                    yield operation_name, where, name


def _request_properties(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for operation_name, operation in _operations(document):
        for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
            for where, name in _properties(document, media.get("schema"), operation_name, set()):
                yield operation_name, where, name


def test_no_response_schema_has_a_password_property(document: dict[str, Any]) -> None:
    found = list(_response_properties(document))

    # The walk reaches nested shapes: the user inside the admin's list page, for one.
    assert any(
        operation == "GET /api/v1/admin/users" and name == "email" for operation, _, name in found
    ), "the walk did not reach the users in the admin's list"
    assert len({(where, name) for _, where, name in found}) > 100
    leaks = sorted(
        f"{operation}: {where}.{name}"
        for operation, where, name in found
        if "password" in name.lower()
    )
    assert leaks == []


def test_the_walk_does_see_passwords_where_they_belong(document: dict[str, Any]) -> None:
    """The same walk over request bodies finds the password fields, so the check above
    cannot pass by looking in the wrong place."""
    sent = {
        (operation, name)
        for operation, _, name in _request_properties(document)
        if "password" in name.lower()
    }

    assert ("POST /api/v1/auth/register", "password") in sent
    assert ("POST /api/v1/auth/login", "password") in sent


def test_every_error_is_documented_as_problem_json_only(document: dict[str, Any]) -> None:
    """Not also as application/json, as FastAPI documents a route's response model."""
    for name, operation in _operations(document):
        if name == "GET /healthz":  # a monitor's plain JSON, {"status": …}, by design
            continue
        for status, response in operation.get("responses", {}).items():
            if int(status) >= 400:
                assert list(response.get("content", {})) == ["application/problem+json"], (
                    name,
                    status,
                )


def test_every_422_is_documented_as_the_problem_the_api_sends(document: dict[str, Any]) -> None:
    """FastAPI's default 422 (`HTTPValidationError`, application/json) is not what the API
    answers: every 422 is problem+json with `validation_failed` and `errors`."""
    documented = 0
    for name, operation in _operations(document):
        response = operation.get("responses", {}).get("422")
        if response is None:
            continue
        documented += 1
        assert list(response["content"]) == ["application/problem+json"], name
        schema = response["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": REF_PREFIX + "Problem"}, name
        assert "validation_failed" in response["description"], name
    assert documented > 20  # every route with a body, a query or a path parameter
    for name, operation in _operations(document):
        if "requestBody" in operation:
            assert "malformed_request" in operation["responses"]["400"]["description"], name
            assert "content_too_large" in operation["responses"]["413"]["description"], name
            assert "unsupported_media_type" in operation["responses"]["415"]["description"], name
        if name.split(" ")[-1].startswith("/api/"):
            assert "database_unavailable" in operation["responses"]["503"]["description"], name
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert {"code", "errors", "status", "title", "detail"} <= set(problem["properties"])


async def test_a_422_is_sent_as_documented(client: Any) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "nobody@example.com"})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_failed"
    assert {e["field"] for e in body["errors"]} >= {"login", "password"}
