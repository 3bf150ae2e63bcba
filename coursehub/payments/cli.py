"""`coursehub payments …`: simulate the payment gateway for development and demos."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation

import typer

from coursehub.core.console import console, fail, run, target_database
from coursehub.core.database import command_transaction
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.settings import get_settings
from coursehub.payments import service
from coursehub.payments.schemas import PaymentEventType
from coursehub.payments.signature import SIGNATURE_HEADER, sign

payments_app = typer.Typer(no_args_is_help=True)


def _amount(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        fail(f"--amount {value!r} is not a number")
    if not amount.is_finite() or amount < 0:
        fail(f"--amount {value!r} is not an amount of money (a number, 0 or more)")
    return amount


async def _apply(
    config: DatabaseConfig, order_number: str, event: PaymentEventType, amount: Decimal | None
) -> str:
    async with command_transaction(config) as session:
        result = await service.simulate(
            session,
            order_number=order_number,
            event=event,
            amount=amount,
            secret=get_settings().payment_webhook_secret.get_secret_value(),
        )
        order = result.order
        return (
            f"{result.outcome.value}: order {order.order_number} is {order.status.value}, "
            f"payment {order.payment_status.value}"
        )


async def _signed_body(
    config: DatabaseConfig, order_number: str, event: PaymentEventType, amount: Decimal | None
) -> bytes:
    async with command_transaction(config) as session:
        return await service.simulated_body_for(
            session, order_number=order_number, event=event, amount=amount
        )


def _post(url: str, body: bytes) -> str:
    if not url.startswith(("http://", "https://")):
        fail(f"--url must be an http(s) URL, not {url!r}")
    secret = get_settings().payment_webhook_secret.get_secret_value()
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (scheme checked above)
            return f"{response.status}: {response.read().decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        fail(f"the webhook answered {exc.code}: {exc.read().decode(errors='replace')}")
    except urllib.error.URLError as exc:
        fail(f"could not reach {url}: {exc.reason}")
    # urlopen lets these out unwrapped: a connection closed without an answer
    # (RemoteDisconnected), a malformed port (InvalidURL), a timeout.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        fail(f"could not reach {url}: {exc.__class__.__name__}: {exc}")


@payments_app.command("simulate")
def simulate_command(
    order_number: str = typer.Argument(..., help="The order, e.g. CH-20261125-7K3QX9."),
    fail_payment: bool = typer.Option(False, "--fail", help="Send payment.failed instead."),
    amount: str | None = typer.Option(None, help="Pay this amount instead of the order's."),
    url: str | None = typer.Option(
        None,
        help="POST the signed event to this webhook URL (a running server, e.g. "
        "http://127.0.0.1:8000/api/v1/webhooks/payments) instead of applying it here.",
    ),
) -> None:
    """Act as the payment gateway: sign a payment.captured (or --fail: payment.failed) event
    for the order with COURSEHUB_PAYMENT_WEBHOOK_SECRET, and apply it through the webhook's
    own code (or POST it to --url)."""
    event = PaymentEventType.failed if fail_payment else PaymentEventType.captured
    paid = _amount(amount)
    config = target_database().config
    if url is None:
        console.print(run(_apply(config, order_number, event, paid)))
    else:
        body = run(_signed_body(config, order_number, event, paid))
        console.print(_post(url, body))
