"""The Idempotency-Key lookup is served by `Order_userId_idempotencyKey_key`.

That index is on the expression `("metadata" ->> 'idempotencyKey')`, partial on it
being NOT NULL: a statement can use it only if it spells the same expression, the key
name a literal. (A bound key name, `metadata ->> $2`, matches it in a custom plan, where
the value is known, but not in the generic plan a prepared statement switches to.)
"""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.sql import DriverStatement
from coursehub.orders.repository import (
    ORDER_BY_IDEMPOTENCY_KEY,
    find_order_id_by_idempotency_key,
)
from tests.queries import explain_generic_in, plan_nodes

ORDERS = 5_000
BUYERS = 50

BULK_USERS = text(
    """
    INSERT INTO "User" (id, email, username, password, role, "createdAt", "updatedAt")
    SELECT 'buyer-' || n, 'buyer' || n || '@example.com', 'buyer' || n, 'x', 'user', now(), now()
    FROM generate_series(1, :buyers) AS n
    """
)
# Every other order was placed with an Idempotency-Key.
BULK_ORDERS = text(
    """
    INSERT INTO "Order" (id, "orderNumber", "userId", status, amount, "originalAmount",
                         "paymentStatus", currency, metadata, "createdAt", "updatedAt")
    SELECT 'order-' || n, 'CH-BULK-' || n, 'buyer-' || (n % :buyers + 1), 'pending', 500, 500,
           'pending', 'INR',
           CASE WHEN n % 2 = 0 THEN jsonb_build_object('idempotencyKey', 'key-' || n) END,
           now(), now()
    FROM generate_series(1, :orders) AS n
    """
)


async def test_the_idempotency_lookup_uses_its_index_in_a_generic_plan(
    session: AsyncSession,
) -> None:
    await session.execute(BULK_USERS, {"buyers": BUYERS})
    await session.execute(BULK_ORDERS, {"buyers": BUYERS, "orders": ORDERS})
    connection = await session.connection()
    await connection.exec_driver_sql('ANALYZE "Order"')
    # The statement as checkout sends it (the session and the driver compile it alike),
    # prepared, and explained in the generic plan a prepared statement ends up using.
    statement = DriverStatement(ORDER_BY_IDEMPOTENCY_KEY)
    arguments = statement.arguments({"user_id": "buyer-7", "key": "key-1006"})
    plan = await explain_generic_in(connection, statement.sql, arguments)

    used = [node.get("Index Name") for node in plan_nodes(plan)]
    assert "Order_userId_idempotencyKey_key" in used, json.dumps(plan, indent=1)
    # And it finds that order (order 1006 is buyer 1006 % 50 + 1 = 7's), and only for them.
    found = await find_order_id_by_idempotency_key(session, user_id="buyer-7", key="key-1006")
    assert found == ("order-1006", {"idempotencyKey": "key-1006"})
    assert (
        await find_order_id_by_idempotency_key(session, user_id="buyer-8", key="key-1006") is None
    )
