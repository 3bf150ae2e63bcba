"""Alembic environment.

`coursehub db migrate` hands in an open connection (holding the migration
advisory lock) through `config.attributes["connection"]`; Alembic's own CLI gets
an engine built from DATABASE_URL (or the embedded server) instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import alembic_postgresql_enum  # noqa: F401  (registers enum comparison for autogenerate)
from alembic import context
from sqlalchemy.engine import Connection

from coursehub.models import Base

PRISMA_MIGRATIONS_TABLE = "_prisma_migrations"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # The Node app's migration history is not ours to manage or drop.
    return not (type_ == "table" and name == PRISMA_MIGRATIONS_TABLE)


def number_revision(context: Any, revision: Any, directives: list[Any]) -> None:
    """Name new revisions `NNNN_message`, numbered after the current head."""
    from alembic.script import ScriptDirectory
    from slugify import slugify

    script = directives[0]
    if script.upgrade_ops.is_empty():
        directives[:] = []  # nothing changed: write no empty revision
        return
    head = ScriptDirectory.from_config(context.config).get_current_head()
    number = int(head.split("_", 1)[0]) + 1 if head else 1
    message = slugify(script.message or "change", separator="_", max_length=40)
    script.rev_id = f"{number:04d}_{message}"


def configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=include_name,
        process_revision_directives=number_revision,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine() -> None:
    from coursehub.core.database import create_engine, ensure_database_exists, resolve_database
    from coursehub.core.settings import get_settings

    resolved = resolve_database(get_settings())
    await ensure_database_exists(resolved.config)
    engine = create_engine(resolved.config, pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(configure_and_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url="postgresql://",
        target_metadata=Base.metadata,
        literal_binds=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = context.config.attributes.get("connection")
    if given is not None:
        configure_and_run(given)
    else:
        asyncio.run(run_with_own_engine())
