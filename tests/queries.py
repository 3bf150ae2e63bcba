"""What the speed and query-count tests share: the statements an engine sends, and their
plans."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from coursehub.core.database import Database
from coursehub.core.locks import COUPON_CLAIM_LOCK_CLASS

# A catalogue of `courses` courses with distinct prices and creation times, as a real one
# has: PostgreSQL 18 can skip-scan a composite index ("Course_price_id_idx",
# "Course_createdAt_id_idx") for an id when its leading column holds one value, which is as
# good as the primary key only for such a table. Parameters: admin, courses.
BULK_COURSES = text(
    """
    INSERT INTO "Course" (id, title, slug, duration, price, category, level, "isPublished",
                          "createdBy", "createdAt", "updatedAt")
    SELECT 'course-' || n, 'Course ' || n, 'course-' || n, 60, 199 + (n % 50) * 100,
           'cat-' || (n % 10),
           'beginner', n % 10 <> 0, :admin, now() - n * interval '1 second', now()
    FROM generate_series(1, :courses) AS n
    """
)
# How often the server planned a prepared statement generically and afresh (custom).
PLANS = text(
    "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = :sql"
)


class StatementLog:
    """The SQL statements an engine sends, with their parameters. Savepoints, their
    releases and rollbacks are the test harness's, not the code's: left out, unless
    `keep_savepoints` (checkout's coupon claim makes one of its own)."""

    def __init__(self, *, keep_savepoints: bool = False) -> None:
        self.executed: list[tuple[str, Any]] = []
        self.keep_savepoints = keep_savepoints

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if self.keep_savepoints or not statement.lstrip().upper().startswith(
            ("SAVEPOINT", "RELEASE", "ROLLBACK")
        ):
            self.executed.append((statement, parameters))

    @property
    def statements(self) -> list[str]:
        return [statement for statement, _ in self.executed]

    @property
    def parameters(self) -> list[Any]:
        return [parameters for _, parameters in self.executed]

    @property
    def count(self) -> int:
        return len(self.executed)


@contextmanager
def captured(engine: AsyncEngine, *, keep_savepoints: bool = False) -> Iterator[StatementLog]:
    log = StatementLog(keep_savepoints=keep_savepoints)
    event.listen(engine.sync_engine, "before_cursor_execute", log)
    try:
        yield log
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", log)


async def explain(engine: AsyncEngine, statement: str, parameters: Any) -> dict[str, Any]:
    """The plan PostgreSQL makes for a captured statement."""
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
        document = result.scalar_one()
    explained = json.loads(document) if isinstance(document, str) else document
    plan: dict[str, Any] = explained[0]["Plan"]
    return plan


async def explain_generic(engine: AsyncEngine, statement: str, parameters: Any) -> dict[str, Any]:
    """The generic plan of a captured statement: the one a prepared statement settles on
    after a few executions, made without the parameters' values. A partial or expression
    index that only a value could prove (a bound JSON key, say) is missing from it."""
    async with engine.connect() as conn, conn.begin():
        return await explain_generic_in(conn, statement, parameters)


async def explain_generic_in(
    conn: AsyncConnection, statement: str, parameters: Any
) -> dict[str, Any]:
    """`explain_generic` inside a transaction already open on `conn` (it sees that
    transaction's rows and statistics; the plan mode is set for it alone)."""
    literals = ", ".join(
        "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"
        for value in parameters
    )
    await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    await conn.exec_driver_sql(f"PREPARE explained_statement AS {statement}")
    try:
        result = await conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) EXECUTE explained_statement({literals})"
        )
        document = result.scalar_one()
    finally:
        await conn.exec_driver_sql("DEALLOCATE explained_statement")
    explained = json.loads(document) if isinstance(document, str) else document
    plan: dict[str, Any] = explained[0]["Plan"]
    return plan


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def sequential_scans(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [
        node
        for node in plan_nodes(plan)
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == table
    ]


async def waiting_for_locks(database: Database, count: int, *, what: str) -> None:
    """Return once `count` backends of this database wait on a lock (10 s at most)."""
    statement = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(1000):
        async with database.transaction() as session:
            if (await session.scalar(statement) or 0) >= count:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} {what} never queued on a lock")


async def hold_coupon_claims(session: AsyncSession, coupon_id: str, *, exclusive: bool) -> None:
    """Take the coupon's claim lock (coupons/repository.py) as a checkout's claim holds it,
    shared or exclusive, until `session`'s transaction ends."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await session.execute(
        text(f"SELECT {function}(:lock_class, hashtext(:coupon_id))"),
        {"lock_class": COUPON_CLAIM_LOCK_CLASS, "coupon_id": coupon_id},
    )


async def terminate(database: Database, connection: asyncpg.Connection) -> None:
    """End `connection`'s server process from another of `database`'s connections, as a
    restart or an admin's pg_terminate_backend would, and wait until asyncpg has seen it
    close (it reads the server's goodbye by itself; 5 s at most)."""
    async with database.read_connection() as other:
        await other.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
    for _ in range(500):
        if connection.is_closed():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("asyncpg never saw the terminated connection close")
