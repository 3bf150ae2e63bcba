"""Expiring stale pending orders in the background, so a store needs no cron job for it.

Every server process runs the loop; that is safe because expiry locks the orders it
cancels with SKIP LOCKED (two processes never cancel the same order, nor wait on each
other) and each batch of a round is its own short transaction. `coursehub orders expire`
does the same once, for operators who prefer cron or run with the loop turned off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from coursehub.core.database import Database
from coursehub.core.models import utcnow
from coursehub.orders.service import EXPIRY_BATCH, expire_stale_order_batch

logger = logging.getLogger("coursehub.orders")


async def expire_stale_orders(
    database: Database,
    *,
    ttl: timedelta,
    batch_size: int = EXPIRY_BATCH,
) -> list[str]:
    """Cancel every pending order created more than `ttl` ago, `batch_size` at a time, each
    batch committed in its own transaction: a backlog never holds thousands of row locks,
    and a batch that fails (it raises) leaves the batches before it committed. The
    numbers of the orders expired. "Now" is fixed for the whole run: orders placed during
    it are not its to expire."""
    now = utcnow()
    expired: list[str] = []
    while True:
        async with database.transaction() as session:
            batch = await expire_stale_order_batch(session, ttl=ttl, now=now, limit=batch_size)
        expired.extend(batch)
        if len(batch) < batch_size:
            return expired


async def expire_orders_periodically(
    database: Database, *, ttl: timedelta, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Expire pending orders older than `ttl` every `interval_seconds` until `stop` is set."""
    while not stop.is_set():
        try:
            expired = await expire_stale_orders(database, ttl=ttl)
            if expired:
                logger.info("expired %d pending order(s): %s", len(expired), ", ".join(expired))
        except Exception:
            # The database may be down for a while; the next round tries again.
            logger.exception("expiring stale orders failed; retrying in %s s", interval_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
