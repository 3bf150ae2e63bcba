"""All of the catalogue's SQL.

Lists select only the listing columns (never whole ORM rows) and are keyset
paginated: each sort order ends in `id`, so `(sort key, id)` is unique and the
next page starts strictly after the last row served, whatever was inserted or
edited meanwhile. Every filter and sort is served by an index of migration 0003
(tests/catalog/test_speed.py checks with EXPLAIN).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import (
    REAL,
    ColumnElement,
    Integer,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from coursehub.catalog.enums import CourseSort
from coursehub.core.locks import COURSE_SLUG_LOCK_CLASS
from coursehub.core.models import PrismaDecimal
from coursehub.core.pagination import CursorValue
from coursehub.core.sql import DriverStatement, Reader, RowView, ViewStatement, in_utc

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller (a script, the benchmark) imports only this module.
from coursehub.models import Course, CourseEnrollment, OrderItem

# A keyset: the sort key of the last row served, then its id.
SortKey = datetime | Decimal | str | float
Keyset = tuple[SortKey, str]
SortColumn = ColumnElement[Any] | InstrumentedAttribute[Any]

SEARCH_CONFIG: ColumnElement[Any] = literal_column("'english'::regconfig")


# NamedTuples, not frozen dataclasses: both are built and hashed (as cache keys) on every
# list request, and a tuple does both in C (a frozen dataclass's ~4 µs each, in Python).
class CourseFilters(NamedTuple):
    """What a list is narrowed to. `published=None` means drafts too (admins only)."""

    published: bool | None = True
    category: str | None = None
    level: str | None = None
    featured: bool | None = None
    free: bool | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    q: str | None = None


# `to_char`'s pattern for createdAt (a timestamp without time zone, holding UTC): ISO 8601
# with its offset, to the microsecond, the same whatever the session's DateStyle and
# TimeZone; `datetime.fromisoformat` reads it as an aware datetime, and a cursor holds it
# as it is.
CREATED_AT_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
# In the SQL's text, not a parameter: nothing to send or encode at each call.
_CREATED_AT_FORMAT_SQL: ColumnElement[str] = literal_column(f"'{CREATED_AT_FORMAT}'", Text())


class CourseSummary(RowView):
    """One row of a course list: the listing columns, plus what keysets need. The row as
    asyncpg read it (core/sql.py `RowView`): a page makes no object per row."""

    __slots__ = ()

    id: str
    title: str
    slug: str
    price: Decimal
    duration: int
    category: str
    level: str
    is_featured: bool
    thumbnail: str | None
    is_published: bool
    # createdAt as text (`CREATED_AT_FORMAT`): a page decoded a timestamp per row otherwise
    # (~1 µs each, a sixth of the public page's CPU), where only the last row's is ever
    # needed (for the next cursor), but on admin pages, which show it.
    created_at_text: str
    rank: float | None  # search relevance; None without a search query

    @property
    def created_at(self) -> datetime:
        """createdAt, aware, in UTC (as stored)."""
        return datetime.fromisoformat(self.created_at_text)

    def cursor_values(self, sort: CourseSort) -> list[CursorValue]:
        """What a cursor holds to start the next page after this row: its sort key (as
        `decode_keyset` reads it back) and its id."""
        match sort:
            case CourseSort.newest:
                return [self.created_at_text, self.id]
            case CourseSort.price_asc | CourseSort.price_desc:
                return [str(self.price), self.id]  # exact: a float would round the bound
            case CourseSort.title_asc:
                return [self.title, self.id]
            case CourseSort.relevance:
                assert self.rank is not None, "relevance needs a search query"
                return [self.rank, self.id]


def search_document() -> ColumnElement[Any]:
    """The course's tsvector, spelled exactly as Course_search_idx is, so the index serves it."""
    return func.course_search_document(Course.title, Course.description, Course.features)


def search_query(q: str | ColumnElement[str]) -> ColumnElement[Any]:
    # websearch syntax: quoted phrases, `or`, `-word`; never a syntax error.
    return func.websearch_to_tsquery(SEARCH_CONFIG, q)


class _ListShape(NamedTuple):
    """What a list statement's SQL depends on: which filters are set (their values are
    parameters), the sort, and whether it starts after a keyset."""

    published: bool | None
    category: bool
    level: bool
    featured: bool | None
    free: bool | None
    min_price: bool
    max_price: bool
    q: bool
    sort: CourseSort
    after: bool


HALF_PAISA: ColumnElement[Decimal] = literal_column("0.005", PrismaDecimal)


def _conditions(shape: _ListShape) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if shape.published is not None:
        conditions.append(Course.is_published == shape.published)
    if shape.category:
        conditions.append(Course.category == bindparam("category", type_=Text()))
    if shape.level:
        conditions.append(Course.level == bindparam("level", type_=Text()))
    if shape.featured is not None:
        conditions.append(Course.is_featured == shape.featured)
    # Prices as shown and sold: half-up to the paisa. A price of more places (from the Node
    # app, DECIMAL(65,30)) shows as X.XX when X.XX - 0.005 <= price < X.XX + 0.005, so the
    # bounds move by half a paisa rather than the column being rounded (which no index
    # serves). Prices of whole paise, as the API writes them, select the same either way.
    if shape.free is True:
        conditions.append(Course.price < HALF_PAISA)
    elif shape.free is False:
        conditions.append(Course.price >= HALF_PAISA)
    if shape.min_price:
        conditions.append(Course.price >= bindparam("min_price", type_=PrismaDecimal) - HALF_PAISA)
    if shape.max_price:
        conditions.append(Course.price < bindparam("max_price", type_=PrismaDecimal) + HALF_PAISA)
    if shape.q:
        conditions.append(search_document().op("@@")(search_query(bindparam("q", type_=Text()))))
    return conditions


# Building a statement, computing its cache key and compiling it cost more CPU than running
# it (see docs/BENCHMARKS.md), so each shape of list is built and compiled once, with every
# value (filters, keyset, limit) a parameter: a few hundred shapes at most, whatever the
# values. Statements are immutable: sharing is safe.
@lru_cache(maxsize=512)
def _list_statement(shape: _ListShape) -> ViewStatement[CourseSummary]:
    """The one statement behind every course list page (public and admin)."""
    rank: ColumnElement[Any]
    if shape.q:
        query = search_query(bindparam("q", type_=Text()))
        rank = func.ts_rank(search_document(), query, type_=REAL)
    elif shape.sort is CourseSort.relevance:
        raise ValueError("sorting by relevance needs a search query")
    else:
        rank = null()

    key: SortColumn = {
        CourseSort.newest: Course.created_at,
        CourseSort.price_asc: Course.price,
        CourseSort.price_desc: Course.price,
        CourseSort.title_asc: Course.title,
        CourseSort.relevance: rank,
    }[shape.sort]
    descending = shape.sort in (CourseSort.newest, CourseSort.price_desc, CourseSort.relevance)

    statement = select(
        Course.id,
        Course.title,
        Course.slug,
        Course.price,
        Course.duration,
        Course.category,
        Course.level,
        Course.is_featured,
        Course.thumbnail,
        Course.is_published,
        # As text, in a form that is the same whatever the session's DateStyle and TimeZone
        # (a timestamp without time zone, stored in UTC): `CourseSummary.created_at`.
        func.to_char(Course.created_at, _CREATED_AT_FORMAT_SQL, type_=Text()).label(
            "created_at_text"
        ),
        rank.label("rank"),
    ).where(*_conditions(shape))
    if shape.after:
        # A row-value comparison: PostgreSQL walks the (key, id) index from the keyset.
        position = tuple_(key, Course.id)
        after = tuple_(bindparam("after_key", type_=key.type), bindparam("after_id", type_=Text()))
        statement = statement.where(position < after if descending else position > after)
    if descending:
        statement = statement.order_by(key.desc(), Course.id.desc())
    else:
        statement = statement.order_by(key.asc(), Course.id.asc())
    return ViewStatement(statement.limit(bindparam("limit", type_=Integer())), CourseSummary)


@lru_cache(maxsize=1024)  # the same few filter sets are asked for over and over
def _list_query(
    filters: CourseFilters, sort: CourseSort, after: bool
) -> tuple[ViewStatement[CourseSummary], dict[str, Any]]:
    """The statement for these filters (`_list_statement`) and the parameters their values
    give it: worked out once per filter set rather than at every page."""
    shape = _ListShape(
        published=filters.published,
        category=filters.category is not None,
        level=filters.level is not None,
        featured=filters.featured,
        free=filters.free,
        min_price=filters.min_price is not None,
        max_price=filters.max_price is not None,
        q=filters.q is not None,
        sort=sort,
        after=after,
    )
    parameters = {
        name: value
        for name in ("category", "level", "min_price", "max_price", "q")
        if (value := getattr(filters, name)) is not None
    }
    return _list_statement(shape), parameters


def list_courses(
    reader: Reader,
    *,
    filters: CourseFilters,
    sort: CourseSort = CourseSort.newest,
    after: Keyset | None = None,
    limit: int = 20,
) -> Awaitable[list[CourseSummary]]:
    """One page of courses, in one query. Drafts are included when `filters.published` is None.

    A read on an asyncpg connection (core/sql.py): the public list's read connection, or
    the admin's session's; one round trip, no transaction of its own for a read-only
    request. (Returns the statement's awaitable: no coroutine of its own, core/sql.py.)"""
    statement, parameters = _list_query(filters, sort, after is not None)
    if after is None:
        return statement.fetch(reader, **parameters, limit=limit)
    after_key, after_id = after
    return statement.fetch(
        reader, **parameters, limit=limit, after_key=after_key, after_id=after_id
    )


class CourseDetail(RowView):
    """A course, every column, as read for its page: the row as asyncpg read it (core/sql.py
    `RowView`), not an ORM object, which would be tracked for nothing."""

    __slots__ = ()

    id: str
    title: str
    slug: str
    description: str | None
    thumbnail: str | None
    duration: int
    price: Decimal
    features: list[str | None] | None  # as stored: see CourseRead's `features`
    category: str
    level: str
    is_published: bool
    is_featured: bool
    created_by: str
    created_at: datetime  # aware, UTC
    updated_at: datetime  # aware, UTC


# Built and compiled once: only the slug changes (see `_list_statement` for why).
_COURSE_BY_SLUG = ViewStatement(
    select(
        Course.id,
        Course.title,
        Course.slug,
        Course.description,
        Course.thumbnail,
        Course.duration,
        Course.price,
        Course.features,
        Course.category,
        Course.level,
        Course.is_published,
        Course.is_featured,
        Course.created_by,
        in_utc(Course.created_at),
        in_utc(Course.updated_at),
    ).where(Course.slug == bindparam("slug", type_=Text())),
    CourseDetail,
)


async def get_course_by_slug(reader: asyncpg.Connection, slug: str) -> CourseDetail | None:
    """One course by slug, drafts too, on a read connection (core/sql.py)."""
    return await _COURSE_BY_SLUG.fetchrow(reader, slug=slug)


async def get_course_by_id(session: AsyncSession, course_id: str) -> Course | None:
    return await session.get(Course, course_id)


async def lock_course(session: AsyncSession, course_id: str) -> Course | None:
    """The course, its row locked FOR NO KEY UPDATE until the transaction ends, for a
    read-modify-write. A deletion or change in flight is waited for and then seen (None,
    or the row as it committed: READ COMMITTED re-reads a row that changed while the lock
    was awaited); `populate_existing` puts that row into an object the session may
    already hold. Not FOR UPDATE: that would also wait for (and hold up) every checkout
    and grant of the course, whose foreign-key checks take FOR KEY SHARE on its row."""
    statement = (
        select(Course)
        .where(Course.id == course_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_slug_base(session: AsyncSession, base: str) -> None:
    """Hold off, until this transaction ends, every other creation of a course whose slug is
    made from the same base: each then sees the slugs the ones before it committed."""
    await session.execute(
        select(func.pg_advisory_xact_lock(COURSE_SLUG_LOCK_CLASS, func.hashtext(base)))
    )


async def taken_slugs(session: AsyncSession, base: str) -> set[str]:
    """`base` and every `base-…` slug in use, in one query. The `base-…` ones as a range in
    byte order (`~>=~`, `~<~`: '.' follows '-'), which `Course_slug_pattern_idx` serves in
    any plan; a LIKE needs its prefix known when planned, and `Course_slug_key` is in the
    collation's order, where a prefix is no range."""
    statement = select(Course.slug).where(
        or_(
            Course.slug == base,
            and_(Course.slug.op("~>=~")(base + "-"), Course.slug.op("~<~")(base + ".")),
        )
    )
    return set((await session.execute(statement)).scalars())


async def add_course(session: AsyncSession, course: Course) -> None:
    """Insert inside a savepoint: a unique violation (a slug taken meanwhile) undoes only this
    insert, so the caller can retry with another slug in the same transaction."""
    async with session.begin_nested():
        session.add(course)
        await session.flush()


async def flush_course(session: AsyncSession) -> None:
    """Write pending changes inside a savepoint (see `add_course`)."""
    async with session.begin_nested():
        await session.flush()


async def is_course_in_use(session: AsyncSession, course_id: str) -> bool:
    """Whether any order item or enrollment refers to the course (one query)."""
    ordered = exists().where(OrderItem.course_id == course_id)
    enrolled = exists().where(CourseEnrollment.course_id == course_id)
    return (await session.execute(select(or_(ordered, enrolled)))).scalar_one()


async def delete_course(session: AsyncSession, course_id: str) -> bool:
    """Delete inside a savepoint; the foreign keys (RESTRICT) still guard against an order
    made meanwhile. True if a row was deleted."""
    async with session.begin_nested():
        result = await session.execute(delete(Course).where(Course.id == course_id))
    return bool(getattr(result, "rowcount", 0))


# GET /categories, a public read: on a read connection (core/sql.py).
_PUBLISHED_BY_CATEGORY = DriverStatement(
    select(Course.category, func.count())
    .where(Course.is_published == true())
    .group_by(Course.category)
    .order_by(Course.category)
)


async def count_published_by_category(reader: asyncpg.Connection) -> Sequence[tuple[str, int]]:
    return [(row[0], row[1]) for row in await _PUBLISHED_BY_CATEGORY.fetch(reader)]
