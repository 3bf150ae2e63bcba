"""The floor's checkout (benchmarks/floor.py) makes the store's checks with the store's
semantics, so the comparison is fair: a coupon use counts only while its order is not
cancelled, and a taken order number is retried rather than failing the checkout. And the
floor does no more work than it needs: its round trips and plans, below."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.bench.fixture import (
    SMOKE_SIZE,
    Fixture,
    drop_fixture,
    prepare_fixture,
)
from coursehub.bench.suite import load_floor, make_floor_ops
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.sql import driver_connection
from coursehub.models import CouponUsage, Order, OrderItem, OrderStatus
from tests.conftest import scratch_database_name
from tests.factories import make_coupon, make_course, make_order, make_user
from tests.orders.invariants import assert_order_invariants
from tests.queries import BULK_COURSES, PLANS


@pytest.fixture(scope="module")
def floor() -> ModuleType:
    return load_floor()


async def connection_of(session: AsyncSession) -> asyncpg.Connection:
    await session.flush()
    return await driver_connection(session)


async def test_a_coupon_used_by_a_cancelled_order_may_be_used_again(
    session: AsyncSession, floor: ModuleType
) -> None:
    user = await make_user(session)
    course, earlier = await make_course(session), await make_course(session)
    coupon = await make_coupon(session, code="AGAIN")
    await make_order(
        session,
        user=user,
        courses=[earlier],
        coupon=coupon,
        discount="10",
        status=OrderStatus.cancelled,
    )
    connection = await connection_of(session)

    order_id = await floor.place_order(
        connection, user_id=user.id, course_ids=[course.id], coupon_code="again"
    )

    usages = (await session.execute(select(CouponUsage.order_id))).scalars().all()
    assert order_id in usages
    # A use whose order is not cancelled still counts: the same buyer is refused.
    with pytest.raises(floor.CheckoutRefused, match="already used"):
        await floor.place_order(
            connection, user_id=user.id, course_ids=[earlier.id], coupon_code="AGAIN"
        )


async def test_a_taken_order_number_is_retried(
    session: AsyncSession, floor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, other = await make_user(session), await make_user(session)
    course, elsewhere = await make_course(session), await make_course(session)
    taken = await make_order(session, user=other, courses=[elsewhere])
    numbers = iter([taken.order_number, "CH-20260101-FLOOR2"])
    monkeypatch.setattr(floor, "order_number", lambda at: next(numbers))
    connection = await connection_of(session)

    order_id = await floor.place_order(
        connection, user_id=user.id, course_ids=[course.id], coupon_code=None
    )

    order = await session.get(Order, order_id)
    assert order is not None and order.order_number == "CH-20260101-FLOOR2"
    await assert_order_invariants(session)


async def test_every_number_taken_refuses_the_checkout(
    session: AsyncSession, floor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, other = await make_user(session), await make_user(session)
    course, elsewhere = await make_course(session), await make_course(session)
    taken = await make_order(session, user=other, courses=[elsewhere])
    monkeypatch.setattr(floor, "order_number", lambda at: taken.order_number)
    connection = await connection_of(session)

    with pytest.raises(floor.CheckoutRefused, match="order number"):
        await floor.place_order(
            connection, user_id=user.id, course_ids=[course.id], coupon_code=None
        )


async def test_legacy_prices_are_snapshotted_to_the_paisa(
    session: AsyncSession, floor: ModuleType
) -> None:
    user = await make_user(session)
    courses = [await make_course(session, price=p) for p in ("99.995", "0.004", "10.005")]
    connection = await connection_of(session)

    order_id = await floor.place_order(
        connection, user_id=user.id, course_ids=[c.id for c in courses], coupon_code=None
    )

    prices = (
        await session.execute(select(OrderItem.price).where(OrderItem.order_id == order_id))
    ).scalars()
    assert sorted(prices) == [Decimal("0.00"), Decimal("10.01"), Decimal("100.00")]
    await assert_order_invariants(session)


# --- round trips and plans ---------------------------------------------------------------
#
# The floor is what the store's code is judged against: it must not make more round trips,
# nor make the server plan more, than the work needs.

COURSES = 2_000


@pytest.mark.parametrize("coupon_code", [None, "TENOFF"], ids=["no coupon", "with a coupon"])
async def test_the_checkouts_courses_are_planned_once_per_connection(
    session: AsyncSession, floor: ModuleType, coupon_code: str | None
) -> None:
    """Given the ids' array itself, PostgreSQL planned the courses' statement afresh at
    every checkout (a custom plan each time, on a catalogue of 2,000 courses); as a
    subquery's result, as the store's checkout sends it, the generic plan is kept."""
    admin = await make_user(session)
    await make_coupon(session, code="TENOFF")
    await session.execute(BULK_COURSES, {"admin": admin.id, "courses": COURSES})
    # Every table the statement reads, not only the one just filled: the planner's sizes of
    # the others (pg_class.reltuples) are whatever the last ANALYZE left, which an earlier
    # test's rolled-back rows may have skewed (ANALYZE writes them in place, not
    # transactionally), and with them the generic plan's cost against the custom ones'.
    await (await session.connection()).exec_driver_sql(
        'ANALYZE "Course", "CourseEnrollment", "Order", "OrderItem", "Coupon", "CouponUsage"'
    )
    sql = floor.CHECKOUT_COURSES if coupon_code is None else floor.CHECKOUT_COURSES_AND_COUPON

    async def checkout(course_ids: list[str]) -> None:
        buyer = await make_user(session)  # a new one each time: one use of the coupon each
        connection = await connection_of(session)
        await floor.place_order(
            connection, user_id=buyer.id, course_ids=course_ids, coupon_code=coupon_code
        )

    for n in range(1, 9):  # enough for the plan cache to settle on a generic plan
        await checkout([f"course-{n}", f"course-{n + 1}"])  # published: n % 10 <> 0
    # Four more, all on the generic plan. Autovacuum analyzing a table the statement reads
    # invalidates the plan, and the next execution is planned afresh once: a window it
    # fell in is measured again.
    for _ in range(3):
        before = (await session.execute(PLANS, {"sql": sql})).one()
        for n in range(11, 15):
            await checkout([f"course-{n}"])
        generic, custom = (await session.execute(PLANS, {"sql": sql})).one()
        if (generic - before[0], custom - before[1]) == (4, 0):
            break
    assert (generic - before[0], custom - before[1]) == (4, 0), "re-planned each time"
    await assert_order_invariants(session)


@pytest.fixture(scope="module")
async def bench_fixture(server: DatabaseConfig) -> AsyncIterator[Fixture]:
    config = server.with_database(scratch_database_name("floortrips"))
    fixture = await prepare_fixture(config, SMOKE_SIZE)
    try:
        yield fixture
    finally:
        await drop_fixture(config)


class Statements:
    """The statements a connection sends (asyncpg's query logger), each named as the floor
    names it (BEGIN and COMMIT as they are)."""

    def __init__(self, floor: ModuleType) -> None:
        self.names = {
            " ".join(value.split()): name
            for name, value in vars(floor).items()
            if name.isupper() and isinstance(value, str)
        }
        self.sent: list[str] = []

    def __call__(self, record: LoggedQuery) -> None:
        query = " ".join(record.query.split())
        self.sent.append(self.names.get(query, query.rstrip(";")))

    async def of(self, operation: Awaitable[object]) -> list[str]:
        # The logger is called soon after each statement, not in it: let those of the
        # statements before this operation be logged, then those of the operation's.
        await asyncio.sleep(0)
        self.sent.clear()
        await operation
        await asyncio.sleep(0)
        return list(self.sent)


@pytest.fixture
async def floor_ops(
    floor: ModuleType, bench_fixture: Fixture
) -> AsyncIterator[tuple[Any, Statements]]:
    """The floor's operations on a pool of one connection, whose statements are logged."""
    pool = await floor.create_pool(bench_fixture.config.asyncpg_connect_kwargs(), size=1)
    statements = Statements(floor)
    try:
        async with pool.acquire() as connection:
            connection.add_query_logger(statements)
        yield make_floor_ops(floor, pool, bench_fixture, tag=secrets.token_hex(3)), statements
    finally:
        await pool.close()


async def test_the_floors_reads_are_one_statement_each_with_no_transaction(
    floor_ops: tuple[Any, Statements],
) -> None:
    """As the store's read-only requests run (Database.read_connection): BEGIN and COMMIT
    around a read were two round trips the store does not make."""
    ops, statements = floor_ops
    for index in (0, 1):  # the first call of each also prepares its statements
        catalog = await statements.of(ops.catalog_page(index))
        by_slug = await statements.of(ops.course_by_slug(index))
        crud = await statements.of(ops.user_crud(index))

    assert catalog == ["CATALOG_PAGE"]
    assert by_slug == ["COURSE_BY_SLUG"]
    assert crud == [
        *("BEGIN", "INSERT_USER", "COMMIT"),
        "SELECT_USER_WITH_PROFILE",
        *("BEGIN", "UPDATE_ROLE", "COMMIT"),
        *("BEGIN", "DELETE_USER", "COMMIT"),
    ]


async def test_the_floors_checkout_reads_its_courses_and_coupon_in_one_statement(
    floor: ModuleType, floor_ops: tuple[Any, Statements], bench_fixture: Fixture
) -> None:
    """With a coupon, as many round trips as without (the coupon read beside the courses);
    without one, an insert that carries no coupon usage; the coupon's row locked only when
    it has a use limit, or when every coupon is to be locked."""
    ops, statements = floor_ops
    for index in (0, 1):  # the first call of each also prepares its statements
        with_coupon = await statements.of(ops.checkout(index))
        without = await statements.of(ops.checkout_no_coupon(100 + index))
        locking = await statements.of(ops.checkout_locking_coupon(200 + index))

    buyer, lock = ("BEGIN", "INSERT_USER"), "LOCK_USER"
    assert with_coupon == [
        *buyer,
        lock,
        "CHECKOUT_COURSES_AND_COUPON",
        "INSERT_ORDER_WITH_USAGE",
        "COMMIT",
    ]
    assert without == [*buyer, lock, "CHECKOUT_COURSES", "INSERT_ORDER", "COMMIT"]
    assert "CouponUsage" not in floor.INSERT_ORDER
    assert locking == [
        *buyer,
        lock,
        "CHECKOUT_COURSES_AND_COUPON",
        "LOCK_COUPON",
        "INSERT_ORDER_WITH_USAGE",
        "COMMIT",
    ]

    # A limited coupon: its row locked, then its uses counted under the lock.
    async with ops.pool.acquire() as connection, connection.transaction():
        user_id = await ops._create_user(connection, "limited", 0)
        limited = await statements.of(
            floor.place_order(
                connection,
                user_id=user_id,
                course_ids=ops.course_pair(300),
                coupon_code=bench_fixture.limited_coupon_code,
            )
        )
    assert limited == [
        lock,
        "CHECKOUT_COURSES_AND_COUPON",
        "LOCK_COUPON",
        "COUNT_USES",
        "INSERT_ORDER_WITH_USAGE",
    ]

    # The same rows written as before: an order per checkout, two items each, and a usage
    # with each coupon's.
    connection = await asyncpg.connect(**bench_fixture.config.asyncpg_connect_kwargs())
    try:
        orders = await connection.fetch(
            'SELECT o.amount, o."originalAmount", count(DISTINCT i.id) AS items,'
            " count(DISTINCT u.id) AS usages, max(u.discount) AS discount"
            ' FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o.id'
            ' LEFT JOIN "CouponUsage" u ON u."orderId" = o.id GROUP BY o.id'
        )
    finally:
        await connection.close()
    assert len(orders) == 7
    assert sorted(row["usages"] for row in orders) == [0, 0, 1, 1, 1, 1, 1]
    for row in orders:
        assert row["items"] == 2
        assert row["amount"] == row["originalAmount"] - (row["discount"] or 0)
