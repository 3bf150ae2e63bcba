"""Shared by the seed and backup tests: the CLI in a real process, checksums, invariants."""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from coursehub.core.dburl import DatabaseConfig


def run_cli(
    *args: str,
    config: DatabaseConfig,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    bound_by_file_permissions: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`coursehub ARGS` in its own process, on `config` via DATABASE_URL, stdin not a terminal.
    `bound_by_file_permissions`: as an ordinary user would run it (`bound_by_permissions`)."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("ADMIN_EMAIL", "ADMIN_PASSWORD")
    }
    environment.update({"DATABASE_URL": config.to_url(), **(env or {})})
    prefix = []
    if bound_by_file_permissions:
        prefix = bound_by_permissions()
        if prefix and not _socket_reachable_when_bound(config):
            pytest.skip(
                "the server's socket is in a directory only its own user may enter (the "
                "embedded server's), which root bound by file permissions cannot"
            )
    return subprocess.run(
        [*prefix, sys.executable, "-m", "coursehub", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# Root's power to read, write and enter whatever it likes, whatever the permissions.
_PERMISSION_OVERRIDES = "-dac_override,-dac_read_search"


@functools.cache
def _can_drop_permission_overrides() -> bool:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return False
    tried = subprocess.run(
        [setpriv, f"--bounding-set={_PERMISSION_OVERRIDES}", "--inh-caps=-all", "true"],
        capture_output=True,
        timeout=30,
    )
    return tried.returncode == 0


def _socket_reachable_when_bound(config: DatabaseConfig) -> bool:
    """Whether a root process bound by file permissions can still reach the server: over
    TCP, or through a socket directory it owns or that others may enter."""
    if not config.is_socket:
        return True
    directory = os.stat(config.host)
    return directory.st_uid == os.geteuid() or bool(directory.st_mode & stat.S_IXOTH)


def bound_by_permissions() -> list[str]:
    """The prefix to a command that has it bound by file permissions (a directory without
    x cannot be entered, one without w not written), as every user but root is: nothing
    when not root; as root, `setpriv` without the capabilities that let root past them
    (tests run as root in containers). Skips the test if root cannot shed them."""
    if os.geteuid() != 0:
        return []
    if not _can_drop_permission_overrides():
        pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    return [setpriv, f"--bounding-set={_PERMISSION_OVERRIDES}", "--inh-caps=-all"]


async def fetch(config: DatabaseConfig, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def fetchval(config: DatabaseConfig, query: str, *args: Any) -> Any:
    rows = await fetch(config, query, *args)
    return rows[0][0] if rows else None


async def table_checksums(config: DatabaseConfig) -> dict[str, tuple[int, str]]:
    """Per table of the schema: (row count, md5 of every row's text, in a fixed order)."""
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        tables = [
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
                config.schema,
            )
        ]
        sums = {}
        for table in tables:
            row = await connection.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' "
                f"ORDER BY t::text), '')) AS sum FROM \"{table}\" t"
            )
            sums[table] = (row["n"], row["sum"])
        return sums
    finally:
        await connection.close()


# Each query counts the orders (or rows) that break one rule of the store; all must be 0.
INVARIANTS = {
    "originalAmount is the sum of the items": """
        SELECT count(*) FROM "Order" o WHERE o."originalAmount" <>
            (SELECT coalesce(sum(i."price"), 0) FROM "OrderItem" i WHERE i."orderId" = o."id")""",
    "every order has items": """
        SELECT count(*) FROM "Order" o
        WHERE NOT EXISTS (SELECT 1 FROM "OrderItem" i WHERE i."orderId" = o."id")""",
    "amount is originalAmount minus the usage's discount": """
        SELECT count(*) FROM "Order" o LEFT JOIN "CouponUsage" u ON u."orderId" = o."id"
        WHERE o."amount" <> o."originalAmount" - coalesce(u."discount", 0)""",
    "amounts are whole paise and not negative": """
        SELECT count(*) FROM "Order"
        WHERE "amount" < 0 OR "amount" <> round("amount", 2)
           OR "originalAmount" <> round("originalAmount", 2)""",
    "completed and refunded orders have an enrollment per item": """
        SELECT count(*) FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o."id"
        WHERE o."status" IN ('completed', 'refunded') AND NOT EXISTS (
            SELECT 1 FROM "CourseEnrollment" e
            WHERE e."orderId" = o."id" AND e."courseId" = i."courseId" AND e."userId" = o."userId")""",
    "enrollments come from completed or refunded orders, active iff completed": """
        SELECT count(*) FROM "CourseEnrollment" e JOIN "Order" o ON o."id" = e."orderId"
        WHERE o."status" NOT IN ('completed', 'refunded')
           OR (o."status" = 'completed') <> (e."status" = 'active')""",
    "status agrees with paymentStatus": """
        SELECT count(*) FROM "Order" WHERE NOT (
            ("status" = 'completed' AND "paymentStatus" = 'paid')
         OR ("status" = 'refunded' AND "paymentStatus" = 'refunded')
         OR ("status" = 'cancelled' AND "paymentStatus" IN ('failed', 'pending'))
         OR ("status" IN ('pending', 'processing') AND "paymentStatus" = 'pending'))""",
    "free orders are completed with method free": """
        SELECT count(*) FROM "Order"
        WHERE "amount" = 0 AND NOT ("status" = 'completed' AND "paymentMethod" = 'free')""",
    "maxUses is kept by orders that are not cancelled": """
        SELECT count(*) FROM "Coupon" c WHERE c."maxUses" < (
            SELECT count(*) FROM "CouponUsage" u JOIN "Order" o ON o."id" = u."orderId"
            WHERE u."couponId" = c."id" AND o."status" <> 'cancelled')""",
    "a coupon once per user, counting orders that are not cancelled": """
        SELECT count(*) FROM (SELECT 1 FROM "CouponUsage" u JOIN "Order" o ON o."id" = u."orderId"
                              WHERE o."status" <> 'cancelled'
                              GROUP BY u."couponId", u."userId" HAVING count(*) > 1) twice""",
    "coupons used within their dates and minimum purchase": """
        SELECT count(*) FROM "CouponUsage" u JOIN "Coupon" c ON c."id" = u."couponId"
        JOIN "Order" o ON o."id" = u."orderId"
        WHERE o."createdAt" NOT BETWEEN c."startDate" AND c."endDate"
           OR o."originalAmount" < coalesce(c."minPurchase", 0)""",
    "pending orders are younger than the 30-minute expiry": """
        SELECT count(*) FROM "Order" WHERE "status" IN ('pending', 'processing')
          AND "createdAt" < (now() AT TIME ZONE 'UTC') - interval '30 minutes'""",
    "times are in order": """
        SELECT count(*) FROM "Order" o JOIN "User" u ON u."id" = o."userId"
        WHERE o."createdAt" < u."createdAt" OR o."updatedAt" < o."createdAt" """,
}


async def broken_invariants(config: DatabaseConfig) -> dict[str, int]:
    """The rules some row breaks, with how many rows break each."""
    broken = {}
    for name, query in INVARIANTS.items():
        count = await fetchval(config, query)
        if count:
            broken[name] = count
    return broken


async def schema_properties(config: DatabaseConfig) -> tuple[str, str | None, str | None] | None:
    """The store's schema's owner, privileges and comment (None: no such schema)."""
    rows = await fetch(
        config,
        "SELECT nspowner::regrole::text AS owner, nspacl::text AS acl,"
        " obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = $1",
        config.schema,
    )
    return (rows[0]["owner"], rows[0]["acl"], rows[0]["comment"]) if rows else None


async def schemas_with_tables(config: DatabaseConfig) -> dict[str, int]:
    """Every schema of the database that holds tables (the system's aside), with how many."""
    rows = await fetch(
        config,
        "SELECT schemaname, count(*) AS n FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') GROUP BY schemaname",
    )
    return {row["schemaname"]: row["n"] for row in rows}


async def execute(config: DatabaseConfig, statements: str) -> None:
    """Run SQL (several statements allowed) on `config`'s database, committing."""
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        await connection.execute(statements)
    finally:
        await connection.close()
