"""The declarative base every model shares, and the column types Prisma uses.

Physical names are Prisma's (tables `"User"`, columns `"createdAt"`, constraints
`"User_pkey"`, `"User_email_key"`, `"Order_userId_createdAt_idx"`), so a database
made by the Node/Prisma app works under ours untouched. Python attributes stay
snake_case; each column names its physical column explicitly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, MetaData, Numeric, Text, text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from coursehub.core.timestamps import to_stored_precision

# Prisma's constraint and index names. Unique indexes are named explicitly with
# `unique_index` because Prisma names them `_key` yet makes them indexes.
NAMING_CONVENTION = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


def utcnow() -> datetime:
    """Now, in UTC, at the millisecond precision of Prisma's TIMESTAMP(3).

    Truncating here keeps the value held in memory equal to the stored one, which
    keyset cursors built from a just-inserted row depend on.
    """
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    """Prisma's `@default(uuid())`: a v4 UUID made by the application."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMP(3) without time zone, holding UTC, as Prisma stores DateTime.

    Python always sees aware UTC datetimes; naive input is taken to be UTC.
    """

    impl = TIMESTAMP(timezone=False, precision=3)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return to_stored_precision(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Prisma's `Decimal` is DECIMAL(65,30).
PrismaDecimal = Numeric(65, 30, asdecimal=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: Text(),
        datetime: UTCDateTime(),
        Decimal: PrismaDecimal,
        dict[str, Any]: JSONB(),
    }


def unique_index(table: str, *columns: str) -> Index:
    """A unique index named as Prisma names `@unique` / `@@unique`: `<Table>_<cols>_key`."""
    return Index(f"{table}_{'_'.join(columns)}_key", *columns, unique=True)


class IdMixin:
    # sort_order keeps Prisma's column order (id first, timestamps last) in DDL.
    id: Mapped[str] = mapped_column(primary_key=True, default=new_id, sort_order=-100)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(
        "createdAt", default=utcnow, server_default=text("CURRENT_TIMESTAMP"), sort_order=100
    )


class TimestampsMixin(CreatedAtMixin):
    # Prisma's @updatedAt: no database default; the application sets it on every
    # insert and update. `onupdate` also covers bulk `update()` statements.
    updated_at: Mapped[datetime] = mapped_column(
        "updatedAt", default=utcnow, onupdate=utcnow, sort_order=101
    )
