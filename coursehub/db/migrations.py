"""Applying, inspecting and generating migrations (Alembic), and adopting Prisma databases.

`migrate` and `downgrade` hold a PostgreSQL advisory lock for their whole run, so two
processes starting together (two app replicas, say) apply each migration once. Each
revision runs in its own transaction: a run killed half-way leaves whole
revisions behind it, and the next run carries on from there. The lock is a session's,
so both refuse a connection through PgBouncer (`pgbouncer=true`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RangeNotAncestorError, RevisionError
from alembic.util.exc import CommandError as AlembicCommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from coursehub.core.database import create_engine, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import ConfigurationError, StoreError, first_line
from coursehub.core.locks import MIGRATION_LOCK_KEY
from coursehub.db.schema_contents import drop_schema_contents

BASELINE_REVISION = "0001_prisma_baseline"
PRISMA_TABLES = (
    "User",
    "UserProfile",
    "UserPreference",
    "Course",
    "CourseEnrollment",
    "Order",
    "OrderItem",
    "Coupon",
    "CouponUsage",
)
# migrations/ of the repository, which the package ships as `coursehub.migrations`
# (pyproject.toml): the source tree's own under an editable install, the installed copy
# under a wheel's.
MIGRATIONS_DIRECTORY = Path(str(resources.files("coursehub.migrations")))


class MigrationError(StoreError):
    status = 500
    code = "migration_failed"
    title = "Migration failed"


def alembic_config(
    connection: Connection | None = None, *, script_location: Path = MIGRATIONS_DIRECTORY
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("file_template", "%%(rev)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@dataclass
class MigrateResult:
    before: str | None
    after: str | None
    adopted: bool = False
    applied: list[str] = field(default_factory=list)


@dataclass
class MigrationStatus:
    current: str | None
    head: str
    applied: list[str]
    pending: list[str]
    drift: list[str]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.drift


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _existing_tables(connection: Connection) -> set[str]:
    rows = connection.execute(
        text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    )
    return {row[0] for row in rows}


def _adopt_prisma_database(connection: Connection) -> bool:
    """Stamp the baseline on a database the Node/Prisma app made. True if it did.

    Such a database has the tables and a `_prisma_migrations` table but no
    `alembic_version`. Stamping writes only Alembic's bookkeeping table: no row
    of the store's data is read or changed.
    """
    tables = _existing_tables(connection)
    if "alembic_version" in tables or not (tables & set(PRISMA_TABLES)):
        return False
    missing = [t for t in PRISMA_TABLES if t not in tables]
    if "_prisma_migrations" not in tables:
        raise MigrationError(
            "the database has store tables but no migration history (neither alembic_version "
            "nor _prisma_migrations); refusing to guess. Migrate an empty database instead."
        )
    if missing:
        raise MigrationError(
            "this Prisma database lacks tables of the baseline schema: "
            + ", ".join(missing)
            + "; run the Node app's pending `prisma migrate deploy` first"
        )
    _run_alembic(command.stamp, alembic_config(connection), BASELINE_REVISION)
    return True


def _known_revisions() -> list[str]:
    """Every revision of this code, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _check_known(current: str | None) -> None:
    if current is not None and current not in _known_revisions():
        raise MigrationError(
            f"the database is at revision {current!r}, which this version of CourseHub does "
            "not know: a newer CourseHub migrated it. Upgrade CourseHub; nothing was changed"
        )


def _upgrade(connection: Connection, target: str) -> tuple[bool, str | None, str | None]:
    adopted = _adopt_prisma_database(connection)
    before = _current_revision(connection)
    _check_known(before)
    # End the transaction those reads began, so that Alembic runs each revision in a
    # transaction of its own (transaction_per_migration): a run killed half-way keeps
    # the revisions it finished.
    connection.commit()
    _run_alembic(command.upgrade, alembic_config(connection), target)
    return adopted, before, _current_revision(connection)


def _run_alembic(function: Any, *args: Any, **options: Any) -> Any:
    """An Alembic command, its errors (an unknown revision, say) as a MigrationError. Every
    Alembic command of the store goes through here."""
    try:
        return function(*args, **options)
    except AlembicCommandError as exc:
        raise MigrationError(first_line(exc)) from exc


def _revisions_between(before: str | None, after: str | None) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    if after is None:
        return []
    revisions = [r.revision for r in script.iterate_revisions(after, before or "base")]
    return list(reversed([r for r in revisions if r != before]))


def require_direct_connection(config: DatabaseConfig) -> None:
    """Refuse a database reached through PgBouncer in transaction mode (`pgbouncer=true`).

    Such a pooler hands each transaction whichever server connection is free, so the
    migration lock, a session's, lands on a connection the next revision may not get:
    concurrent runs would each apply the same revisions. Prisma's answer is the same: its
    migrations take a direct URL (`directUrl`)."""
    if config.pgbouncer:
        raise ConfigurationError(
            "DATABASE_URL goes through PgBouncer (pgbouncer=true), whose transaction pooling "
            "defeats the lock that keeps migrations from running twice at once; run db "
            "migrate, downgrade and reset with DATABASE_URL pointing at PostgreSQL directly "
            "(Prisma's directUrl); nothing was changed"
        )


@asynccontextmanager
async def _holding_migration_lock(config: DatabaseConfig) -> AsyncIterator[AsyncConnection]:
    """A connection holding the migration advisory lock, outside any transaction."""
    require_direct_connection(config)
    engine = create_engine(config, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            # A session-level lock outlives this commit; each revision then runs
            # in a transaction of its own.
            await connection.commit()
            try:
                yield connection
            finally:
                await connection.rollback()
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                await connection.commit()
    finally:
        await engine.dispose()


async def migrate(config: DatabaseConfig, target: str = "head") -> MigrateResult:
    """Apply pending migrations (Prisma's `migrate deploy`), under the advisory lock."""
    require_direct_connection(config)
    await ensure_database_exists(config)
    async with _holding_migration_lock(config) as connection:
        adopted, before, after = await connection.run_sync(_upgrade, target)
        await connection.commit()
    return MigrateResult(
        before=before, after=after, adopted=adopted, applied=_revisions_between(before, after)
    )


@dataclass
class DowngradeResult:
    before: str | None
    after: str | None
    undone: list[str]


_DOWNGRADE_TARGET = re.compile(r"base|heads?|-\d+|[A-Za-z0-9_]+(?:[+-]\d+)?")


def _revisions_undone(current: str | None, target: str) -> list[str]:
    """The revisions downgrading from `current` to `target` undoes, newest first, resolved as
    Alembic's downgrade resolves them: `base`, `-N`, `REV-N`, `REV+N`, `head(s)`, a
    revision id or a unique prefix of one."""
    script = ScriptDirectory.from_config(alembic_config())
    try:
        if not target.strip():
            reason = "no revision given"
        elif not _DOWNGRADE_TARGET.fullmatch(target):
            # Alembic's other syntaxes (branches, `@`) fail inside it with a bare assertion.
            reason = "not a revision (base, -N, REV, REV-N or REV+N)"
        else:
            revisions = script.iterate_revisions(current, target, select_for_downgrade=True)
            return [revision.revision for revision in revisions]
    except RangeNotAncestorError:
        reason = "it is not an earlier revision"
    except RevisionError as exc:
        reason = first_line(exc)
    raise MigrationError(
        f"cannot downgrade to {target!r} from {current or 'base'}: {reason}; nothing was changed"
    )


def _downgrade(connection: Connection, target: str, undo_baseline: bool) -> DowngradeResult:
    before = _current_revision(connection)
    _check_known(before)
    undone = _revisions_undone(before, target)
    if BASELINE_REVISION in undone and not undo_baseline:
        # On a database adopted from the Node app too: the baseline is Prisma's tables.
        raise MigrationError(
            f"downgrading to {target} undoes the baseline and drops every table with its "
            "rows; back up first (`coursehub db backup`), then pass --force"
        )
    # As in `_upgrade`: each revision is then undone in a transaction of its own. Under the
    # lock the database stays at `before`, so Alembic resolves `target` to the same
    # revisions.
    connection.commit()
    if undone:
        _run_alembic(command.downgrade, alembic_config(connection), target)
    return DowngradeResult(before=before, after=_current_revision(connection), undone=undone)


async def downgrade(
    config: DatabaseConfig, target: str, *, undo_baseline: bool = False
) -> DowngradeResult:
    """Undo migrations down to `target` (`_revisions_undone` lists its forms), under the
    advisory lock. A target that undoes the baseline, dropping every table, is refused
    unless `undo_baseline`; whatever the refusal, nothing is changed."""
    async with _holding_migration_lock(config) as connection:
        result = await connection.run_sync(_downgrade, target, undo_baseline)
        await connection.commit()
    return result


def _describe_diff(diff: Any) -> str:
    """One line per difference Alembic found, e.g. `add_column Course subtitle`."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe_diff(d) for d in diff)
    kind, *rest = diff
    return " ".join(part for part in (kind, *map(_describe_part, rest)) if part)


def _describe_part(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, list | tuple):
        return "[" + ", ".join(_describe_part(i) for i in item) + "]"
    table = getattr(item, "table_name", None)
    column = getattr(item, "column_name", None)
    if table and column:  # an enum's column, from alembic-postgresql-enum
        return f'"{table}".{column}'
    name = getattr(item, "name", None)
    return name if isinstance(name, str) else ""


def _status(connection: Connection) -> MigrationStatus:
    from coursehub.models import Base

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    current = _current_revision(connection)
    _check_known(current)
    all_revisions = _known_revisions()
    if current is None:
        applied: list[str] = []
    else:
        applied = all_revisions[: all_revisions.index(current) + 1]
    pending = all_revisions[len(applied) :]
    drift: list[str] = []
    if not pending:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": lambda name, type_, parents: name != "_prisma_migrations",
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        drift = [_describe_diff(d) for d in compare_metadata(context, Base.metadata)]
    return MigrationStatus(
        current=current, head=head, applied=applied, pending=pending, drift=drift
    )


async def status(config: DatabaseConfig) -> MigrationStatus:
    engine = create_engine(config, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_status)
    finally:
        await engine.dispose()


async def make_migration(
    config: DatabaseConfig, message: str, *, script_location: Path = MIGRATIONS_DIRECTORY
) -> str | None:
    """Autogenerate a revision from the models (Prisma's `migrate dev`). Its path, or None
    when the models and the migrated database already agree."""
    current = await status(config)
    if current.pending:
        raise ConfigurationError(
            "the database is behind the migrations ("
            + ", ".join(current.pending)
            + "); run `coursehub db migrate` before generating a new one"
        )
    if not current.drift:
        return None
    engine = create_engine(config, pool_size=1)
    try:
        async with engine.connect() as connection:
            script = await connection.run_sync(
                lambda c: _run_alembic(
                    command.revision,
                    alembic_config(c, script_location=script_location),
                    message=message,
                    autogenerate=True,
                )
            )
    finally:
        await engine.dispose()
    assert script is not None and not isinstance(script, list)
    return str(script.path)


async def drop_everything(config: DatabaseConfig) -> None:
    """Drop everything in the database's schema (used by `db reset`), in one transaction,
    keeping the schema with its owner and grants (`drop_schema_contents`, as a restore)."""
    engine = create_engine(config, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(drop_schema_contents(config.schema))
    finally:
        await engine.dispose()
