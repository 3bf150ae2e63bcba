"""The catalogue's rules: slugs, publishing, deletion, and list pages with signed cursors."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import asyncpg
from slugify import slugify
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.catalog import repository
from coursehub.catalog.enums import CourseSort
from coursehub.catalog.errors import CourseInUse, CourseNotFound, SlugTaken
from coursehub.catalog.models import Course
from coursehub.catalog.repository import CourseDetail, CourseFilters, CourseSummary, Keyset
from coursehub.catalog.schemas import (
    SLUG_MAX_LENGTH,
    AdminCourseListQuery,
    CourseCreate,
    CourseListQuery,
    CourseUpdate,
)
from coursehub.core.database import violated_constraint
from coursehub.core.errors import BadCursor
from coursehub.core.models import utcnow
from coursehub.core.money import to_paise
from coursehub.core.pagination import CursorCodec, CursorValue, Page
from coursehub.core.sql import Reader
from coursehub.users.models import Role, User

SLUG_CONSTRAINT = "Course_slug_key"
# Creations of same-titled courses queue on an advisory lock of their base slug, so
# they cannot race for `base-N`. A course whose explicit slug happens to equal a
# generated one (another base) still can; the loser then looks again.
SLUG_ATTEMPTS = 3
FALLBACK_SLUG = "course"

IN_USE_DETAIL = (
    "the course has orders or enrollments, so deleting it would rewrite history; "
    "unpublish it instead (PATCH isPublished=false)"
)


# --- slugs ---------------------------------------------------------------------------


def slug_from_title(title: str) -> str:
    """Unicode transliterated, lower case, hyphens: "Café Déjà Vu" → "cafe-deja-vu"."""
    slug = slugify(title, max_length=SLUG_MAX_LENGTH - 8, word_boundary=True)
    return slug or FALLBACK_SLUG


def first_free_slug(base: str, taken: set[str]) -> str:
    """`base`, else `base-2`, `base-3` …: the first not in `taken`."""
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _slug_taken(slug: str) -> SlugTaken:
    return SlugTaken(f"the slug {slug!r} is already used by another course; choose another")


# --- admin: create, update, delete -----------------------------------------------------


async def create_course(session: AsyncSession, data: CourseCreate, *, admin: User) -> Course:
    """Create a course; its slug is the given one (409 if taken) or made from the title."""
    fields = data.model_dump(exclude={"slug"})
    fields["level"] = data.level.value
    for _ in range(SLUG_ATTEMPTS):
        if data.slug is not None:
            slug = data.slug
        else:
            base = slug_from_title(data.title)
            await repository.lock_slug_base(session, base)
            slug = first_free_slug(base, await repository.taken_slugs(session, base))
        course = Course(**fields, slug=slug, created_by=admin.id)
        try:
            await repository.add_course(session, course)
        except IntegrityError as exc:
            if violated_constraint(exc, expected=[SLUG_CONSTRAINT]) != SLUG_CONSTRAINT:
                raise
            if data.slug is not None:
                raise _slug_taken(slug) from None
            continue  # taken meanwhile by a concurrent create: look again
        return course
    raise SlugTaken("could not find a free slug for this title right now; try again")


async def get_course(session: AsyncSession, course_id: str) -> Course:
    course = await repository.get_course_by_id(session, course_id)
    if course is None:
        raise CourseNotFound(f"no course with id {course_id!r}")
    return course


async def update_course(session: AsyncSession, course_id: str, data: CourseUpdate) -> Course:
    """Change only the fields sent. A new slug must be free (409); the title never moves the
    slug, so links stay valid."""
    # Locked, not just read: a DELETE in flight would otherwise leave the UPDATE below
    # matching no row (a 500) instead of a 404, and a concurrent PATCH would leave the
    # response showing fields older than the row written.
    course = await repository.lock_course(session, course_id)
    if course is None:
        raise CourseNotFound(f"no course with id {course_id!r}")
    changes = data.model_dump(exclude_unset=True)
    if "level" in changes and data.level is not None:
        changes["level"] = data.level.value
    if not changes:
        return course
    for name, value in changes.items():
        setattr(course, name, value)
    course.updated_at = utcnow()
    try:
        await repository.flush_course(session)
    except IntegrityError as exc:
        if violated_constraint(exc, expected=[SLUG_CONSTRAINT]) == SLUG_CONSTRAINT:
            raise _slug_taken(str(changes.get("slug"))) from None
        raise
    return course


async def delete_course(session: AsyncSession, course_id: str) -> None:
    """Delete a course nobody has ordered or enrolled in; otherwise 409 (unpublish it)."""
    if await repository.is_course_in_use(session, course_id):
        raise CourseInUse(IN_USE_DETAIL)
    try:
        deleted = await repository.delete_course(session, course_id)
    except IntegrityError:
        # An order or enrollment arrived between the check and the delete.
        raise CourseInUse(IN_USE_DETAIL) from None
    if not deleted:
        raise CourseNotFound(f"no course with id {course_id!r}")


# --- browsing --------------------------------------------------------------------------


async def get_published_course(
    reader: asyncpg.Connection, slug: str, *, viewer: User | None
) -> CourseDetail:
    """A course by slug; drafts only for admins (404 for everyone else, as if absent)."""
    course = await repository.get_course_by_slug(reader, slug)
    if course is None or (
        not course.is_published and (viewer is None or viewer.role != Role.admin)
    ):
        raise CourseNotFound(f"no published course with slug {slug!r}")
    return course


async def list_categories(reader: asyncpg.Connection) -> list[tuple[str, int]]:
    return list(await repository.count_published_by_category(reader))


def _filters(query: CourseListQuery, *, published: bool | None) -> CourseFilters:
    return CourseFilters(
        published=published,
        category=query.category,
        level=query.level.value if query.level is not None else None,
        featured=query.featured,
        free=query.free,
        min_price=query.min_price,
        max_price=query.max_price,
        q=query.q,
    )


@lru_cache(maxsize=1024)  # the same few filter sets are asked for over and over
def cursor_context(audience: str, sort: CourseSort, filters: CourseFilters) -> str:
    """What a cursor is bound to: the list, its sort and its filters. Reusing a cursor with
    other filters would silently serve a wrong page, so it is a 400 instead."""
    canonical = {
        name: str(to_paise(value)) if isinstance(value, Decimal) else value
        for name, value in filters._asdict().items()
    }
    return f"courses:{audience}:{sort.value}:" + json.dumps(
        canonical, sort_keys=True, separators=(",", ":")
    )


def decode_keyset(sort: CourseSort, values: list[CursorValue]) -> Keyset:
    """The keyset a (signed, so ours) cursor holds, checked against the sort's key type."""
    bad = BadCursor("the cursor is not valid for this list; start again without one")
    if len(values) != 2:
        raise bad
    key, course_id = values
    if not isinstance(course_id, str):
        raise bad
    try:
        match sort:
            case CourseSort.newest if isinstance(key, str):
                created_at = datetime.fromisoformat(key)
                if created_at.tzinfo is None:
                    raise bad
                return (created_at, course_id)
            case CourseSort.price_asc | CourseSort.price_desc if isinstance(key, str):
                price = Decimal(key)
                if not price.is_finite():
                    raise bad
                return (price, course_id)
            case CourseSort.title_asc if isinstance(key, str):
                return (key, course_id)
            case CourseSort.relevance if isinstance(key, int | float) and not isinstance(key, bool):
                return (float(key), course_id)
    except (ValueError, InvalidOperation):
        raise bad from None
    raise bad


async def _page(
    reader: Reader,
    codec: CursorCodec,
    *,
    audience: str,
    query: CourseListQuery,
    filters: CourseFilters,
) -> Page[CourseSummary]:
    sort = query.effective_sort
    context = cursor_context(audience, sort, filters)
    after = decode_keyset(sort, codec.decode(context, query.cursor)) if query.cursor else None
    # One row more than asked says whether there is a next page, in the same query.
    fetch = query.limit + 1
    rows = await repository.list_courses(
        reader, filters=filters, sort=sort, after=after, limit=fetch
    )
    items = rows[: query.limit]
    next_cursor = None
    if len(rows) > query.limit:
        next_cursor = codec.encode(context, items[-1].cursor_values(sort))
    return Page(items=items, next_cursor=next_cursor)


async def list_published_courses(
    reader: asyncpg.Connection, query: CourseListQuery, *, codec: CursorCodec
) -> Page[CourseSummary]:
    """GET /courses: one page of published courses, in one query, on a read connection."""
    filters = _filters(query, published=True)
    return await _page(reader, codec, audience="public", query=query, filters=filters)


async def list_all_courses(
    session: AsyncSession, query: AdminCourseListQuery, *, codec: CursorCodec
) -> Page[CourseSummary]:
    """GET /admin/courses: drafts too, unless `published` narrows it."""
    filters = _filters(query, published=query.published)
    return await _page(session, codec, audience="admin", query=query, filters=filters)
