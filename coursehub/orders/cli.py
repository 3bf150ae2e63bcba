"""`coursehub orders …`: operators' commands on orders."""

from __future__ import annotations

from datetime import timedelta

import typer

from coursehub.core.console import console, run, target_database
from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.settings import MINUTES_A_YEAR, get_settings

orders_app = typer.Typer(no_args_is_help=True)


async def _expire(config: DatabaseConfig, ttl: timedelta) -> list[str]:
    from coursehub.orders.expiry import expire_stale_orders

    database = Database(config, pool_size=1)
    try:
        # Each batch commits on its own (see expire_stale_orders).
        return await expire_stale_orders(database, ttl=ttl)
    finally:
        await database.dispose()


@orders_app.command()
def expire(
    minutes: int | None = typer.Option(
        None,
        min=1,
        max=MINUTES_A_YEAR,  # as COURSEHUB_PENDING_ORDER_TTL_MINUTES: more overflowed the dates
        help="Expire pending orders older than this many minutes "
        "(default: COURSEHUB_PENDING_ORDER_TTL_MINUTES).",
    ),
) -> None:
    """Cancel pending orders older than the time limit (their coupon uses stop counting).

    Safe to run at any time and from cron (e.g. every minute): each run takes only
    the stale orders nobody is paying for at that moment.
    """
    ttl = timedelta(minutes=minutes or get_settings().pending_order_ttl_minutes)
    resolved = target_database()
    expired = run(_expire(resolved.config, ttl))
    console.print(f"Expired {len(expired)} pending order(s) older than {ttl}.")
    for number in expired:
        console.print(f"  {number}")
