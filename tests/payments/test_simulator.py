"""Simulating the gateway: POST /dev/payments/simulate (only with payment_simulator on) and
`coursehub payments simulate`, both through the real, signed webhook path."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import create_app
from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.settings import Settings
from coursehub.models import CourseEnrollment, Order, OrderStatus, PaymentStatus
from tests.conftest import TEST_WEBHOOK_SECRET, share_test_session
from tests.db.helpers import run_cli
from tests.factories import auth_headers, make_admin, make_course, make_order, make_user
from tests.payments.helpers import commit_setup, fresh

URL = "/api/v1/dev/payments/simulate"


async def test_a_buyer_simulates_paying_their_own_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    response = await client.post(
        URL, json={"orderNumber": order.order_number}, headers=auth_headers(buyer)
    )

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "captured"
    stored = await fresh(session, order)
    assert stored.status == OrderStatus.completed
    assert stored.metadata_ is not None and stored.metadata_["paymentId"].startswith("pay_sim_")


async def test_a_simulated_failure_cancels(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    response = await client.post(
        URL,
        json={"orderNumber": order.order_number, "event": "payment.failed"},
        headers=auth_headers(buyer),
    )

    assert response.json()["outcome"] == "failed"
    assert (await fresh(session, order)).payment_status == PaymentStatus.failed


async def test_someone_elses_order_is_404_but_an_admin_may(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    stranger = await make_user(session)
    admin = await make_admin(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)
    body = {"orderNumber": order.order_number}

    by_stranger = await client.post(URL, json=body, headers=auth_headers(stranger))
    assert by_stranger.status_code == 404
    assert (await fresh(session, order)).status == OrderStatus.pending

    by_admin = await client.post(URL, json=body, headers=auth_headers(admin))
    assert by_admin.status_code == 200
    assert by_admin.json()["outcome"] == "captured"


async def test_a_wrong_simulated_amount_is_refused_as_the_webhook_would(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    response = await client.post(
        URL,
        json={"orderNumber": order.order_number, "amount": "1.00"},
        headers=auth_headers(buyer),
    )

    assert response.status_code == 422
    assert response.json()["code"] == "payment_amount_mismatch"
    assert (await fresh(session, order)).status == OrderStatus.pending


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        # Not rounded to the paisa on the way: the gateway's 499.004 is not 499.00.
        ("499.004", "payment_amount_mismatch"),
        ("1e30", "validation_failed"),
        ("Infinity", "validation_failed"),
        ("NaN", "validation_failed"),
    ],
)
async def test_a_simulated_amount_is_sent_as_given_and_a_non_amount_is_422(
    client: httpx.AsyncClient, session: AsyncSession, amount: str, code: str
) -> None:
    buyer = await make_user(session)
    course = await make_course(session, price="499.00")
    order = await make_order(session, user=buyer, courses=[course])
    await commit_setup(session)

    response = await client.post(
        URL,
        json={"orderNumber": order.order_number, "amount": amount},
        headers=auth_headers(buyer),
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert (await fresh(session, order)).status == OrderStatus.pending


async def test_the_simulator_needs_sign_in(client: httpx.AsyncClient) -> None:
    assert (await client.post(URL, json={"orderNumber": "CH-X"})).status_code == 401


@pytest.fixture
async def simulator_off_client(
    session: AsyncSession, settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"payment_simulator": False}), database=database)
    share_test_session(app, session)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_with_the_simulator_off_the_route_does_not_exist(
    simulator_off_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    response = await simulator_off_client.post(
        URL, json={"orderNumber": order.order_number}, headers=auth_headers(buyer)
    )

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert (await fresh(session, order)).status == OrderStatus.pending
    # Nothing else of the request is looked at first: neither a missing token (401)
    # nor a bad body (422) shows that the route is there.
    anonymous = await simulator_off_client.post(URL, json={"orderNumber": order.order_number})
    bad_body = await simulator_off_client.post(URL, json={"bogus": 1}, headers=auth_headers(buyer))
    assert [anonymous.status_code, bad_body.status_code] == [404, 404]
    assert anonymous.json() == bad_body.json() == response.json()


# --- the CLI ---------------------------------------------------------------------------


def simulate(*args: str, config: DatabaseConfig) -> subprocess.CompletedProcess[str]:
    """`coursehub payments simulate ARGS`, signing with the test server's webhook secret."""
    return run_cli(
        "payments",
        "simulate",
        *args,
        config=config,
        env={"COURSEHUB_PAYMENT_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET},
        timeout=120,
    )


@pytest.mark.committing
async def test_cli_simulates_capture_and_failure(
    committed_db: Database, db_config: DatabaseConfig
) -> None:
    async with committed_db.transaction() as session:
        buyer = await make_user(session)
        to_pay = await make_order(session, user=buyer, courses=[await make_course(session)])
        to_fail = await make_order(session, user=buyer, courses=[await make_course(session)])

    paid = simulate(to_pay.order_number, config=db_config)
    failed = simulate(to_fail.order_number, "--fail", config=db_config)
    # Each simulated event is a new payment (a new paymentId): paying again is paying twice.
    paid_again = simulate(to_pay.order_number, config=db_config)
    wrong = simulate(to_fail.order_number, "--amount", "1.00", config=db_config)
    missing = simulate("CH-NOPE", config=db_config)
    not_money = simulate(to_fail.order_number, "--amount", "inf", config=db_config)

    assert paid.returncode == 0, paid.stderr
    assert "captured: order" in paid.stdout and "completed" in paid.stdout
    assert failed.returncode == 0 and "failed:" in failed.stdout
    assert paid_again.returncode == 0 and "second_capture_flagged" in paid_again.stdout
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert missing.returncode == 1 and "no order 'CH-NOPE'" in missing.stderr
    assert not_money.returncode == 1 and "Traceback" not in not_money.stderr
    assert "--amount 'inf' is not an amount of money" in not_money.stderr
    async with committed_db.transaction() as session:
        states = {
            o.order_number: (o.status, o.payment_status)
            for o in (await session.execute(select(Order))).scalars()
        }
        enrolled = (await session.execute(select(CourseEnrollment.order_id))).scalars().all()
    assert states[to_pay.order_number] == (OrderStatus.completed, PaymentStatus.paid)
    assert states[to_fail.order_number] == (OrderStatus.cancelled, PaymentStatus.failed)
    assert list(enrolled) == [to_pay.id]


@pytest.mark.committing
async def test_cli_failures_are_one_line_whatever_the_input_or_the_server(
    committed_db: Database, db_config: DatabaseConfig
) -> None:
    """An order number with `[…]` was read as rich markup (a MarkupError traceback, or the
    message garbled); a --url whose server closes the connection without answering was a
    traceback (urllib lets RemoteDisconnected out unwrapped)."""
    async with committed_db.transaction() as session:
        order = await make_order(
            session, user=await make_user(session), courses=[await make_course(session)]
        )
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    def close_each_connection() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = silent.accept()
                connection.recv(65536)
                connection.close()

    threading.Thread(target=close_each_connection, daemon=True).start()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/api/v1/webhooks/payments"
    try:
        bracketed = simulate("CH-[/x]", config=db_config)
        coloured = simulate("CH-[red]X", config=db_config)
        hung_up = simulate(order.order_number, "--url", url, config=db_config)
        bad_port = simulate(order.order_number, "--url", "http://127.0.0.1:abc/x", config=db_config)
    finally:
        silent.close()

    for result in (bracketed, coloured, hung_up, bad_port):
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")], result
    assert "no order 'CH-[/x]'" in bracketed.stderr
    assert "no order 'CH-[red]X'" in coloured.stderr
    assert "could not reach" in hung_up.stderr and "could not reach" in bad_port.stderr
