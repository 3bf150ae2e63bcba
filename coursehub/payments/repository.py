"""The payments' SQL: the order row, locked, and what it bought."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import Order, OrderItem


async def lock_order(session: AsyncSession, order_number: str) -> Order | None:
    """The order, locked (`SELECT … FOR UPDATE`) until the transaction ends.

    Everything that moves an order's money state takes this lock first, so two
    deliveries of the same event (or a capture racing a refund) run one after the
    other and the second sees what the first did. `populate_existing` makes a row
    already in the session's identity map take the values read under the lock.
    """
    statement = (
        select(Order)
        .where(Order.order_number == order_number)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_order(session: AsyncSession, order_number: str) -> Order | None:
    statement = select(Order).where(Order.order_number == order_number)
    return (await session.execute(statement)).scalar_one_or_none()


async def order_course_ids(session: AsyncSession, order_id: str) -> list[str]:
    statement = (
        select(OrderItem.course_id)
        .where(OrderItem.order_id == order_id)
        .order_by(OrderItem.course_id)
    )
    return list((await session.execute(statement)).scalars())
