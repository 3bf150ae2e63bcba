"""FastAPI dependencies shared by every router: the request's unit of work (its session, or
a write transaction), or a read connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.core.sql import WriteTransaction


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed when the endpoint returns, rolled back if it raises.

    `scope="function"` (below) makes the commit happen before the response is
    sent, so a client never sees success for a transaction that then failed.
    """
    database = get_database(request)
    async with database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def get_read_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection for routes that only read (`Database.read_connection`):
    no session, no transaction; statements run with `DriverStatement.fetch`."""
    async with get_database(request).read_connection() as reader:
        yield reader


async def get_write_transaction(request: Request) -> AsyncIterator[WriteTransaction]:
    """The request's unit of work for the routes that write without a session
    (`Database.write_transaction`): a transaction on a pooled asyncpg connection, begun by
    its first statement, committed when the endpoint returns, rolled back if it raises."""
    async with get_database(request).write_transaction() as writer:
        yield writer


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
# `scope="function"`: the connection goes back to the pool before the response is sent.
ReadConnectionDep = Annotated[asyncpg.Connection, Depends(get_read_connection, scope="function")]
# `scope="function"`, as for the session: committed before the response is sent.
WriteTransactionDep = Annotated[WriteTransaction, Depends(get_write_transaction, scope="function")]
