"""Expiring stale pending orders in the background, so a store needs no cron job for it.

Every server process runs the loop; that is safe because expiry locks the orders it
cancels with SKIP LOCKED (two processes never cancel the same order, nor wait on each
other) and each round is one short transaction. `coursehub orders expire` does the same
once, for operators who prefer cron or run with the loop turned off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from coursehub.core.database import Database
from coursehub.orders.service import expire_stale_orders

logger = logging.getLogger("coursehub.orders")


async def expire_orders_periodically(
    database: Database, *, ttl: timedelta, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Expire pending orders older than `ttl` every `interval_seconds` until `stop` is set."""
    while not stop.is_set():
        try:
            async with database.transaction() as session:
                expired = await expire_stale_orders(session, ttl=ttl)
            if expired:
                logger.info("expired %d pending order(s): %s", len(expired), ", ".join(expired))
        except Exception:
            # The database may be down for a while; the next round tries again.
            logger.exception("expiring stale orders failed; retrying in %s s", interval_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
