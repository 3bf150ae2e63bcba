"""The payment gateway's webhook, and (for development) its simulator."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from coursehub.auth.dependencies import CurrentUser, Public, SettingsDep
from coursehub.core.dependencies import SessionDep
from coursehub.core.errors import Unauthorized
from coursehub.core.problems import RAW_BODY, responses
from coursehub.orders.errors import OrderNotFound
from coursehub.payments import service
from coursehub.payments.errors import (
    InvalidPaymentEvent,
    InvalidSignature,
    PaymentAmountMismatch,
    PaymentCurrencyMismatch,
    PaymentSimulatorDisabled,
)
from coursehub.payments.schemas import PaymentEvent, SimulatePayment, WebhookResultRead
from coursehub.payments.signature import SIGNATURE_HEADER
from coursehub.users.models import Role

router = APIRouter(tags=["payments"])


def _inline_schema(model: type[PaymentEvent]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined, to document a raw body."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _result(result: service.WebhookResult) -> WebhookResultRead:
    return WebhookResultRead(
        outcome=result.outcome,
        order_number=result.order.order_number,
        status=result.order.status,
        payment_status=result.order.payment_status,
    )


@router.post(
    "/webhooks/payments",
    dependencies=[Public],
    response_model=WebhookResultRead,
    responses=responses(
        InvalidSignature,
        InvalidPaymentEvent,
        PaymentAmountMismatch,
        PaymentCurrencyMismatch,
        OrderNotFound,
    ),
    openapi_extra={
        RAW_BODY: True,  # read by the route itself, as signed: no 400/415/validation_failed
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(PaymentEvent)}},
        },
    },
)
async def payment_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> WebhookResultRead:
    """The gateway's `payment.captured` / `payment.failed` events.

    The raw body must be signed: `X-CourseHub-Signature` is the hex HMAC-SHA256 of
    the body under the webhook secret. Replays and out-of-order events are answered
    200 and change nothing; `outcome` says what the event did.
    """
    result = await service.handle_webhook(
        session,
        body=await request.body(),
        signature=signature,
        secret=settings.payment_webhook_secret.get_secret_value(),
    )
    return _result(result)


async def simulator_switched_on(settings: SettingsDep) -> None:
    """404 while the simulator is off, before anything else of the request is looked at
    (its token, its body): as if the route did not exist."""
    if not settings.payment_simulator:
        raise PaymentSimulatorDisabled("no such route")


@router.post(
    "/dev/payments/simulate",
    # First of the route's dependencies, so it runs before authentication and the body's
    # validation, either of which would otherwise answer 401 or 422 and show the route.
    dependencies=[Depends(simulator_switched_on)],
    response_model=WebhookResultRead,
    responses=responses(
        PaymentSimulatorDisabled,
        OrderNotFound,
        PaymentAmountMismatch,
        # No InvalidOrderTransition: the event goes through the webhook's path, which
        # completes only a pending or processing order and flags a capture on any other.
        Unauthorized,
    ),
)
async def simulate_payment(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, body: SimulatePayment
) -> WebhookResultRead:
    """Development only (`COURSEHUB_PAYMENT_SIMULATOR=true`; a 404 otherwise): sign and
    deliver the gateway's event for one of your orders (any order, for an admin)."""
    result = await service.simulate(
        session,
        order_number=body.order_number,
        event=body.event,
        amount=body.amount,
        secret=settings.payment_webhook_secret.get_secret_value(),
        owner_id=None if user.role == Role.admin else user.id,
    )
    return _result(result)
