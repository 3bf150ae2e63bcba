"""All of the catalogue's SQL.

Lists select only the listing columns (never whole ORM rows) and are keyset
paginated: each sort order ends in `id`, so `(sort key, id)` is unique and the
next page starts strictly after the last row served, whatever was inserted or
edited meanwhile. Every filter and sort is served by an index of migration 0003
(tests/catalog/test_speed.py checks with EXPLAIN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    REAL,
    ColumnElement,
    Select,
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

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller (a script, the benchmark) imports only this module.
from coursehub.models import Course, CourseEnrollment, OrderItem

# A keyset: the sort key of the last row served, then its id.
SortKey = datetime | Decimal | str | float
Keyset = tuple[SortKey, str]
SortColumn = ColumnElement[Any] | InstrumentedAttribute[Any]

SEARCH_CONFIG: ColumnElement[Any] = literal_column("'english'::regconfig")


@dataclass(frozen=True)
class CourseFilters:
    """What a list is narrowed to. `published=None` means drafts too (admins only)."""

    published: bool | None = True
    category: str | None = None
    level: str | None = None
    featured: bool | None = None
    free: bool | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    q: str | None = None


@dataclass(frozen=True)
class CourseSummary:
    """One row of a course list: the listing columns, plus what keysets need."""

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
    created_at: datetime
    rank: float | None  # search relevance; None without a search query

    def sort_key(self, sort: CourseSort) -> Keyset:
        match sort:
            case CourseSort.newest:
                return (self.created_at, self.id)
            case CourseSort.price_asc | CourseSort.price_desc:
                return (self.price, self.id)
            case CourseSort.title_asc:
                return (self.title, self.id)
            case CourseSort.relevance:
                assert self.rank is not None, "relevance needs a search query"
                return (self.rank, self.id)


def search_document() -> ColumnElement[Any]:
    """The course's tsvector, spelled exactly as Course_search_idx is, so the index serves it."""
    return func.course_search_document(Course.title, Course.description, Course.features)


def search_query(q: str) -> ColumnElement[Any]:
    # websearch syntax: quoted phrases, `or`, `-word`; never a syntax error.
    return func.websearch_to_tsquery(SEARCH_CONFIG, q)


def _conditions(filters: CourseFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.published is not None:
        conditions.append(Course.is_published == filters.published)
    if filters.category is not None:
        conditions.append(Course.category == filters.category)
    if filters.level is not None:
        conditions.append(Course.level == filters.level)
    if filters.featured is not None:
        conditions.append(Course.is_featured == filters.featured)
    if filters.free is True:
        conditions.append(Course.price == 0)
    elif filters.free is False:
        conditions.append(Course.price > 0)
    if filters.min_price is not None:
        conditions.append(Course.price >= filters.min_price)
    if filters.max_price is not None:
        conditions.append(Course.price <= filters.max_price)
    if filters.q is not None:
        conditions.append(search_document().op("@@")(search_query(filters.q)))
    return conditions


# Building a statement and computing its cache key cost more CPU than running it (see
# docs/BENCHMARKS.md); the first pages of each filter combination are asked for over
# and over, so the built statements are kept. Statements are immutable: sharing is safe.
@lru_cache(maxsize=256)  # ~20 KB each (statement and its cache key): ~5 MB at most
def course_list_statement(
    filters: CourseFilters,
    *,
    sort: CourseSort = CourseSort.newest,
    after: Keyset | None = None,
    limit: int = 20,
) -> Select[*tuple[Any, ...]]:
    """The one statement behind every course list page (public and admin)."""
    rank: ColumnElement[Any]
    if filters.q is not None:
        rank = func.ts_rank(search_document(), search_query(filters.q), type_=REAL)
    elif sort is CourseSort.relevance:
        raise ValueError("sorting by relevance needs a search query")
    else:
        rank = null()

    key: SortColumn = {
        CourseSort.newest: Course.created_at,
        CourseSort.price_asc: Course.price,
        CourseSort.price_desc: Course.price,
        CourseSort.title_asc: Course.title,
        CourseSort.relevance: rank,
    }[sort]
    descending = sort in (CourseSort.newest, CourseSort.price_desc, CourseSort.relevance)

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
        Course.created_at,
        rank.label("rank"),
    ).where(*_conditions(filters))
    if after is not None:
        # A row-value comparison: PostgreSQL walks the (key, id) index from the keyset.
        position = tuple_(key, Course.id)
        statement = statement.where(position < after if descending else position > after)
    if descending:
        statement = statement.order_by(key.desc(), Course.id.desc())
    else:
        statement = statement.order_by(key.asc(), Course.id.asc())
    return statement.limit(limit)


async def list_courses(
    session: AsyncSession,
    *,
    filters: CourseFilters,
    sort: CourseSort = CourseSort.newest,
    after: Keyset | None = None,
    limit: int = 20,
) -> list[CourseSummary]:
    """One page of courses, in one query. Drafts are included when `filters.published` is None."""
    statement = course_list_statement(filters, sort=sort, after=after, limit=limit)
    rows = (await session.execute(statement)).all()
    return [CourseSummary(*row) for row in rows]


async def list_published_courses(
    session: AsyncSession,
    *,
    category: str | None = None,
    level: str | None = None,
    featured: bool | None = None,
    free: bool | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    q: str | None = None,
    sort: CourseSort = CourseSort.newest,
    after: Keyset | None = None,
    limit: int = 20,
) -> list[CourseSummary]:
    """The public catalogue, newest first by default: one query, listing columns only.

    GET /courses goes through here (the service passes its filters, sort and keyset).
    """
    filters = CourseFilters(
        published=True,
        category=category,
        level=level,
        featured=featured,
        free=free,
        min_price=min_price,
        max_price=max_price,
        q=q,
    )
    return await list_courses(session, filters=filters, sort=sort, after=after, limit=limit)


# Built once: only the slug changes (see `course_list_statement` for why).
COURSE_BY_SLUG = select(Course).where(Course.slug == bindparam("slug"))


async def get_course_by_slug(session: AsyncSession, slug: str) -> Course | None:
    return (await session.execute(COURSE_BY_SLUG, {"slug": slug})).scalar_one_or_none()


async def get_course_by_id(session: AsyncSession, course_id: str) -> Course | None:
    return await session.get(Course, course_id)


async def lock_slug_base(session: AsyncSession, base: str) -> None:
    """Hold off, until this transaction ends, every other creation of a course whose slug is
    made from the same base: each then sees the slugs the ones before it committed."""
    await session.execute(
        select(func.pg_advisory_xact_lock(COURSE_SLUG_LOCK_CLASS, func.hashtext(base)))
    )


async def taken_slugs(session: AsyncSession, base: str) -> set[str]:
    """`base` and every `base-…` slug in use, in one query."""
    statement = select(Course.slug).where(
        or_(Course.slug == base, Course.slug.startswith(base + "-", autoescape=True))
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


async def count_published_by_category(session: AsyncSession) -> Sequence[tuple[str, int]]:
    statement = (
        select(Course.category, func.count())
        .where(Course.is_published == true())
        .group_by(Course.category)
        .order_by(Course.category)
    )
    return [(category, count) for category, count in (await session.execute(statement)).all()]
