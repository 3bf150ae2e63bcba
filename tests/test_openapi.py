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
from coursehub.core.problems import RAW_BODY
from coursehub.core.settings import Settings
from coursehub.payments.signature import SIGNATURE_HEADER, sign
from tests.conftest import TEST_WEBHOOK_SECRET

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


def _raw_body_operations(document: dict[str, Any]) -> set[str]:
    """The routes that read their raw body themselves (`x-raw-body`)."""
    return {name for name, operation in _operations(document) if operation.get(RAW_BODY)}


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
    raw_body = _raw_body_operations(document)
    documented = 0
    for name, operation in _operations(document):
        response = operation.get("responses", {}).get("422")
        if response is None:
            continue
        documented += 1
        assert list(response["content"]) == ["application/problem+json"], name
        schema = response["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": REF_PREFIX + "Problem"}, name
        if name not in raw_body:
            assert "validation_failed" in response["description"], name
    assert documented > 20  # every route with a body, a query or a path parameter
    for name, operation in _operations(document):
        if "requestBody" in operation and name not in raw_body:
            assert "malformed_request" in operation["responses"]["400"]["description"], name
            assert "content_too_large" in operation["responses"]["413"]["description"], name
            assert "unsupported_media_type" in operation["responses"]["415"]["description"], name
        if name.split(" ")[-1].startswith("/api/"):
            assert "database_unavailable" in operation["responses"]["503"]["description"], name
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert {"code", "errors", "status", "title", "detail"} <= set(problem["properties"])


def test_a_route_reading_its_raw_body_declares_only_what_it_can_answer(
    document: dict[str, Any],
) -> None:
    """The payment webhook reads its body itself (its signature is over the bytes): FastAPI
    parses nothing, so no `malformed_request`, `unsupported_media_type` or
    `validation_failed`; a body too large is still refused before it (413)."""
    assert _raw_body_operations(document) == {"POST /api/v1/webhooks/payments"}
    webhook = document["paths"]["/api/v1/webhooks/payments"]["post"]

    assert "requestBody" in webhook
    assert not {"400", "415"} & set(webhook["responses"])
    assert "validation_failed" not in webhook["responses"]["422"]["description"]
    assert "invalid_payment_event" in webhook["responses"]["422"]["description"]
    assert "content_too_large" in webhook["responses"]["413"]["description"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"\xff\xfe{}", "application/json"), (b'{"event": 1}', "application/x-www-form-urlencoded")],
)
async def test_the_webhook_answers_no_400_or_415(
    client: Any, body: bytes, content_type: str
) -> None:
    """What the document says of it: a body not UTF-8, or sent under another type, is read
    as the event it is not (422 `invalid_payment_event`)."""
    response = await client.post(
        "/api/v1/webhooks/payments",
        content=body,
        headers={"Content-Type": content_type, SIGNATURE_HEADER: sign(body, TEST_WEBHOOK_SECRET)},
    )

    assert (response.status_code, response.json()["code"]) == (422, "invalid_payment_event")


def test_the_simulator_declares_no_409(document: dict[str, Any]) -> None:
    """It delivers through the webhook's path, which completes only a pending or processing
    order and flags a capture on any other (200 `late_capture_flagged`): never a 409."""
    simulator = document["paths"]["/api/v1/dev/payments/simulate"]["post"]

    assert "409" not in simulator["responses"]


def test_checkout_documents_its_replay(document: dict[str, Any]) -> None:
    """201 for a new order; 200 with `Idempotent-Replayed: true` for a retry with the same
    Idempotency-Key, the same order shape."""
    responses = document["paths"]["/api/v1/orders"]["post"]["responses"]
    order = {"$ref": REF_PREFIX + "OrderRead"}

    assert responses["201"]["content"]["application/json"]["schema"] == order
    assert responses["200"]["content"]["application/json"]["schema"] == order
    header = responses["200"]["headers"]["Idempotent-Replayed"]
    assert header["schema"] == {"type": "string", "enum": ["true"]}


async def test_a_422_is_sent_as_documented(client: Any) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "nobody@example.com"})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_failed"
    assert {e["field"] for e in body["errors"]} >= {"login", "password"}
