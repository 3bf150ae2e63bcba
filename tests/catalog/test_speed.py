"""Speed: every list query is index-backed, and a page costs one query.

10,000 courses are bulk-loaded (one INSERT … SELECT generate_series) and analysed;
then every filter and sort combination is requested through the API, the one SQL
statement each request sends is captured, and EXPLAIN must show no sequential scan
of "Course" in its plan.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.catalog.repository import CourseFilters, list_courses, taken_slugs
from coursehub.catalog.service import list_categories
from coursehub.core.database import Database
from tests.factories import auth_headers, make_admin, make_course
from tests.queries import captured, explain, explain_generic, plan_nodes, sequential_scans

COURSES = 10_000
WORDS = [
    "python",
    "rust",
    "design",
    "cooking",
    "marketing",
    "finance",
    "music",
    "photography",
    "yoga",
    "data",
    "cloud",
    "security",
    "drawing",
    "writing",
    "guitar",
    "piano",
    "spanish",
    "french",
    "statistics",
    "excel",
]

BULK_INSERT = text(
    """
    INSERT INTO "Course" (id, title, slug, description, thumbnail, duration, price, features,
                          category, level, "isPublished", "isFeatured", "createdBy",
                          "createdAt", "updatedAt")
    SELECT gen_random_uuid()::text,
           initcap(w[n % 20 + 1]) || ' for ' || w[(n / 20) % 20 + 1] || ' lovers, part ' || n,
           'bulk-course-' || n,
           'Learn ' || w[(n / 7) % 20 + 1] || ' and ' || w[(n / 3) % 20 + 1] || ' step by step.',
           NULL,
           30 + n % 900,
           CASE WHEN n % 20 = 0 THEN 0 ELSE (n * 37) % 5000 + 0.99 END,
           ARRAY['Lifetime access', 'Certificate of ' || w[(n / 11) % 20 + 1]],
           'category-' || n % 25,
           (ARRAY['beginner', 'intermediate', 'advanced', 'all-levels'])[n % 4 + 1],
           n % 10 <> 0,  -- 90% published
           n % 25 = 0,  -- 4% featured
           'bulk-admin',
           timestamp '2026-01-01' + n * interval '1 minute',
           timestamp '2026-01-01' + n * interval '1 minute'
    FROM generate_series(1, :courses) AS n, (SELECT CAST(:words AS text[]) AS w) AS words
    """
)

SORTS = ["newest", "price_asc", "price_desc", "title"]
FILTERS: list[dict[str, Any]] = [
    {},
    {"category": "category-7"},
    {"level": "advanced"},
    {"featured": "true"},
    {"featured": "false"},
    {"free": "true"},
    {"free": "false"},
    {"min_price": "4000"},
    {"max_price": "200"},
    {"min_price": "1000", "max_price": "1500"},
    {"q": "photography"},
    {"q": "python guitar"},
    {"q": '"step by step" -yoga'},
    {"category": "category-3", "level": "beginner", "free": "false"},
    {"category": "category-3", "featured": "true"},
    {"level": "intermediate", "featured": "true", "max_price": "3000"},
    {"level": "beginner", "free": "true"},
    {"q": "statistics", "category": "category-4", "min_price": "100"},
    {"q": "music", "level": "advanced", "featured": "false"},
]
COMBINATIONS = [
    *({**filters, "sort": sort} for filters, sort in itertools.product(FILTERS, SORTS)),
    *({**filters, "sort": "relevance"} for filters in FILTERS if "q" in filters),
]


@pytest.fixture
async def big_catalogue(committed_db: Database) -> AsyncIterator[Database]:
    async with committed_db.transaction() as session:
        await session.execute(BULK_INSERT, {"courses": COURSES, "words": WORDS})
    async with committed_db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql('VACUUM ANALYZE "Course"')
    yield committed_db


async def test_no_filter_or_sort_scans_the_course_table(
    big_catalogue: Database, committed_client: httpx.AsyncClient
) -> None:
    engine = big_catalogue.engine
    async with big_catalogue.transaction() as session:
        admin_headers = auth_headers(await make_admin(session))
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for params in COMBINATIONS:
        requests.append(("/api/v1/courses", params, {}))
    for params in COMBINATIONS[::3]:
        for published in (None, "true", "false"):
            admin_params = params if published is None else {**params, "published": published}
            requests.append(("/api/v1/admin/courses", admin_params, admin_headers))

    checked = 0
    failures = []
    for url, params, headers in requests:
        # The first page, then the page after it (the keyset condition changes the plan).
        cursor = None
        for _ in range(2):
            query = {**params, "limit": 20, **({"cursor": cursor} if cursor else {})}
            with captured(engine) as log:
                response = await committed_client.get(url, params=query, headers=headers)
            assert response.status_code == 200, (query, response.text)
            course_queries = [(s, p) for s, p in log.executed if '"Course"' in s]
            assert len(course_queries) == 1, (query, log.statements)
            statement, parameters = course_queries[0]
            plan = await explain(engine, statement, parameters)
            if sequential_scans(plan, "Course"):
                failures.append((url, query, json.dumps(plan, indent=1)))
            checked += 1
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break

    assert checked > 2 * len(COMBINATIONS)
    assert failures == [], failures[0]


async def test_one_categorys_first_page_is_read_straight_off_an_index(
    big_catalogue: Database,
) -> None:
    """The benchmark's page: one category, newest first. No sort step, no table scan."""
    engine = big_catalogue.engine
    async with big_catalogue.read_connection() as reader:
        with captured(engine) as log:
            rows = await list_courses(
                reader, filters=CourseFilters(published=True, category="category-7"), limit=20
            )
    assert len(rows) == 20
    assert all(r.category == "category-7" and r.is_published for r in rows)
    assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)
    assert len(log.statements) == 1
    plan = await explain(engine, *log.executed[0])

    nodes = list(plan_nodes(plan))
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan")]
    assert any(
        n.get("Index Name") == "Course_published_category_createdAt_id_idx" for n in nodes
    ), json.dumps(plan, indent=1)


async def test_a_page_costs_one_query(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    for n in range(30):
        await make_course(session, category="programming" if n % 2 else "design")
    await make_course(session, slug="the-one")
    admin_headers = auth_headers(await make_admin(session))
    await session.commit()

    pages: list[tuple[str, dict[str, str | int]]] = [
        ("/api/v1/courses", {"category": "programming", "limit": 5}),
        ("/api/v1/courses", {"q": "course", "min_price": "1", "limit": 5}),
        ("/api/v1/courses/the-one", {}),
        ("/api/v1/categories", {}),
    ]
    for url, params in pages:
        with captured(engine) as log:
            response = await client.get(url, params=params)
        assert response.status_code == 200
        assert len(log.statements) == 1, (url, log.statements)
    with captured(engine) as log:
        response = await client.get("/api/v1/admin/courses", headers=admin_headers)
    assert response.status_code == 200
    # The admin's list: the caller's user row (the role is read on every request), then the page.
    assert len(log.statements) == 2, log.statements
    next_page = await client.get(
        "/api/v1/courses",
        params={"category": "programming", "limit": 5, "cursor": response.json()["next_cursor"]},
    )
    assert next_page.status_code == 400  # an admin-list cursor is not a public-list cursor


async def test_the_categories_query_does_not_scan_the_course_table(
    big_catalogue: Database,
) -> None:
    """GET /categories: the published courses' categories with counts, read in category
    order off an index of published courses (an index-only scan), not the table."""
    engine = big_catalogue.engine
    async with big_catalogue.read_connection() as reader:
        with captured(engine) as log:
            categories = await list_categories(reader)
    assert len(categories) == 25
    assert sum(count for _, count in categories) == COURSES - COURSES // 10  # 90% published
    assert len(log.statements) == 1
    plan = await explain(engine, *log.executed[0])

    assert sequential_scans(plan, "Course") == [], json.dumps(plan, indent=1)
    assert any(n["Node Type"] == "Index Only Scan" for n in plan_nodes(plan)), json.dumps(plan)


async def test_finding_a_new_courses_free_slug_does_not_scan_the_course_table(
    big_catalogue: Database,
) -> None:
    """Creating a course without a slug reads the slugs its title's base already has, in the
    plan a prepared statement settles on too (migration 0009's pattern index; the LIKE it
    replaced read every course, under any collation but C)."""
    engine = big_catalogue.engine
    async with big_catalogue.transaction() as session:
        for n in (2, 3):
            await make_course(session, slug=f"bulk-course-12-{n}")
        with captured(engine) as log:
            taken = await taken_slugs(session, "bulk-course-12")
        statement, parameters = log.executed[0]
        plans = [
            await explain(engine, statement, parameters),
            await explain_generic(engine, statement, parameters),
        ]

    # The base itself and every `base-…`; not the slugs that merely start alike (-120, …).
    assert taken == {"bulk-course-12", "bulk-course-12-2", "bulk-course-12-3"}
    assert len(log.statements) == 1
    for plan in plans:
        assert sequential_scans(plan, "Course") == [], json.dumps(plan, indent=1)
        used = {n.get("Index Name") for n in plan_nodes(plan)}
        assert "Course_slug_pattern_idx" in used, json.dumps(plan, indent=1)
