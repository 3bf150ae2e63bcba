"""Browsing the catalogue: GET /courses (filters, search, sorts, keyset pages), GET
/courses/{slug}, GET /categories, and ETags."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.catalog.enums import CourseSort
from coursehub.catalog.etag import with_vary
from coursehub.catalog.repository import CourseFilters
from coursehub.catalog.service import cursor_context
from coursehub.core.models import utcnow
from coursehub.core.pagination import CursorCodec
from coursehub.core.settings import Settings
from coursehub.models import Course
from tests.factories import auth_headers, make_admin, make_course, make_user

URL = "/api/v1/courses"
T0 = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)


async def ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get(URL, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def walk(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """Every page of a list, following next_cursor."""
    seen: list[str] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await client.get(URL, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def make_catalogue(session: AsyncSession) -> dict[str, Course]:
    """Six published courses and one draft, created a minute apart (oldest first)."""
    specs: list[tuple[str, dict[str, Any]]] = [
        ("py", dict(title="Python Basics", price="499.00", category="programming")),
        (
            "free",
            dict(title="Git Crash Course", price="0", category="programming", level="all-levels"),
        ),
        ("design", dict(title="Figma Design", price="999.00", category="design", featured=True)),
        ("ml", dict(title="Machine Learning", price="2999.00", level="advanced", featured=True)),
        ("ui", dict(title="UI Patterns", price="499.00", category="design", level="intermediate")),
        ("cook", dict(title="Cooking with Python", price="0.00", category="cooking")),
        ("draft", dict(title="Secret Draft", price="10.00", published=False)),
    ]
    courses = {}
    for n, (key, fields) in enumerate(specs):
        courses[key] = await make_course(session, created_at=T0 + timedelta(minutes=n), **fields)
    return courses


async def test_lists_published_courses_newest_first(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    c = await make_catalogue(session)

    response = await client.get(URL)

    assert response.status_code == 200
    page = response.json()
    assert [i["id"] for i in page["items"]] == [
        c[k].id for k in ("cook", "ui", "ml", "design", "free", "py")
    ]
    assert page["next_cursor"] is None
    first = page["items"][0]
    assert set(first) == {
        "id",
        "title",
        "slug",
        "price",
        "duration",
        "category",
        "level",
        "isFeatured",
        "thumbnail",
    }
    assert first["price"] == "0.00"


async def test_filters(client: httpx.AsyncClient, session: AsyncSession) -> None:
    c = await make_catalogue(session)

    def expect(*keys: str) -> set[str]:
        return {c[k].id for k in keys}

    assert set(await ids(client, category="Design")) == expect("design", "ui")
    assert set(await ids(client, level="advanced")) == expect("ml")
    assert set(await ids(client, featured="true")) == expect("design", "ml")
    assert set(await ids(client, featured="false")) == expect("py", "free", "ui", "cook")
    assert set(await ids(client, free="true")) == expect("free", "cook")
    assert set(await ids(client, free="false")) == expect("py", "design", "ml", "ui")
    assert set(await ids(client, min_price="499", max_price="999.00")) == expect(
        "py", "design", "ui"
    )
    assert set(await ids(client, min_price="1000")) == expect("ml")
    assert set(await ids(client, category="programming", free="true")) == expect("free")
    assert set(await ids(client, category="design", featured="true", max_price="999")) == expect(
        "design"
    )
    assert await ids(client, category="nothing-here") == []


async def test_sorts(client: httpx.AsyncClient, session: AsyncSession) -> None:
    c = await make_catalogue(session)
    published = [v for k, v in c.items() if k != "draft"]

    def by(key: Any, reverse: bool = False) -> list[str]:
        return [x.id for x in sorted(published, key=key, reverse=reverse)]

    assert await ids(client, sort="price_asc") == by(lambda x: (x.price, x.id))
    assert await ids(client, sort="price_desc") == by(lambda x: (x.price, x.id), reverse=True)
    assert await ids(client, sort="title") == [
        c[k].id for k in ("cook", "design", "free", "ml", "py", "ui")
    ]
    assert await ids(client, sort="newest") == by(lambda x: (x.created_at, x.id), reverse=True)


async def test_full_text_search_stems_and_ranks(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    title_hit = await make_course(session, title="Running a Marathon", description="Training plan")
    description_hit = await make_course(
        session, title="Fitness 101", description="Covers strength work and some runs too"
    )
    feature_hit = await make_course(
        session, title="Yoga", description="Flexibility", features=["Weekly runner meetups"]
    )
    await make_course(session, title="Painting", description="Oil on canvas")
    await make_course(session, title="Run Your Business", description="x", published=False)

    ranked = await ids(client, q="run")
    explicit = await ids(client, q="run", sort="relevance")
    phrase = await ids(client, q='"oil on canvas"')
    excluded = await ids(client, q="run -marathon")
    by_price = await ids(client, q="run", sort="price_asc")

    # "run" matches "Running" and "runs" by stemming (not "runner": another stem).
    assert ranked == [title_hit.id, description_hit.id]  # title weighs more than description
    assert explicit == ranked
    assert feature_hit.id in await ids(client, q="runner meetups")
    assert len(phrase) == 1
    assert excluded == [description_hit.id]
    assert set(by_price) == set(ranked)
    assert await ids(client, q="the and of") == []  # stop words only: no match, no error


async def test_bad_list_parameters_are_422(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"sort": "relevance"}, "sort"),
        ({"sort": "cheapest"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"level": "expert"}, "level"),
        ({"min_price": "-1"}, "min_price"),
        ({"min_price": "10", "max_price": "5"}, "max_price"),
        ({"featured": "maybe"}, "featured"),
    ]
    for params, field in cases:
        response = await client.get(URL, params=params)
        assert response.status_code == 422, params
        assert response.json()["code"] == "validation_failed"
        assert [e["field"] for e in response.json()["errors"]] == [field], params


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "price_asc"},
        {"sort": "price_desc"},
        {"sort": "title"},
        {"q": "course"},
        {"q": "course", "sort": "newest"},
        {"category": "cat-1", "sort": "price_desc"},
    ],
)
async def test_keyset_pages_cover_the_list_exactly_once(
    client: httpx.AsyncClient, session: AsyncSession, params: dict[str, Any]
) -> None:
    # Equal prices, titles and timestamps: only the id breaks ties, so the keyset must use it.
    for n in range(11):
        await make_course(
            session,
            title=f"Course {'AB'[n % 2]}",
            price=Decimal(n % 3),
            category=f"cat-{n % 2}",
            description="a course about things" if n % 4 else "course course course",
            created_at=T0 + timedelta(minutes=n // 3),
        )

    everything = await ids(client, limit=100, **params)
    paged = await walk(client, limit=2, **params)

    assert len(everything) >= 5
    assert paged == everything


@pytest.mark.parametrize("sort", ["newest", "price_asc"])
async def test_paging_while_courses_are_added_and_edited_never_repeats_or_skips(
    client: httpx.AsyncClient, session: AsyncSession, sort: str
) -> None:
    courses = [
        await make_course(session, created_at=T0 + timedelta(minutes=n), price=Decimal(100 + n))
        for n in range(9)
    ]
    original = {c.id for c in courses}
    await session.commit()

    seen: list[str] = []
    response = await client.get(URL, params={"limit": 3, "sort": sort})
    seen += [i["id"] for i in response.json()["items"]]
    cursor = response.json()["next_cursor"]
    while cursor:
        # Between pages: a new course at the top and one at the very end of the order,
        # edits to rows on both sides of the cursor, a served row deleted (what makes
        # OFFSET skip one), and a new draft.
        newest = await make_course(session, price=Decimal(1))
        await make_course(session, created_at=T0 - timedelta(days=1), price=Decimal(10**6))
        await session.execute(
            update(Course)
            .where(Course.id.in_([seen[0], *sorted(original - set(seen))][:2]))
            .values(title="Edited", description="edited meanwhile", updated_at=utcnow())
        )
        await session.execute(delete(Course).where(Course.id == seen[-1]))
        await make_course(session, published=False, price=Decimal(50))
        await session.commit()
        response = await client.get(URL, params={"limit": 3, "sort": sort, "cursor": cursor})
        assert response.status_code == 200, response.text
        seen += [i["id"] for i in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        assert newest.id not in seen  # it sorts before the cursor: not served late

    assert len(seen) == len(set(seen)), f"{sort}: a row was served twice"
    assert original <= set(seen), f"{sort}: a row was skipped"


async def test_a_tampered_or_foreign_cursor_is_400(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    for n in range(3):
        await make_course(session, category="programming", created_at=T0 + timedelta(minutes=n))
    headers = auth_headers(admin)
    await session.commit()
    cursor = (await client.get(URL, params={"limit": 1, "category": "programming"})).json()[
        "next_cursor"
    ]
    admin_cursor = (
        await client.get("/api/v1/admin/courses", params={"limit": 1}, headers=headers)
    ).json()["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")

    attempts = [
        {"cursor": tampered, "category": "programming"},
        {"cursor": "not-a-cursor!!", "category": "programming"},
        {"cursor": cursor[:-4], "category": "programming"},
        {"cursor": cursor},  # filters changed: no category
        {"cursor": cursor, "category": "design"},
        {"cursor": cursor, "category": "programming", "sort": "price_asc"},
        {"cursor": admin_cursor},  # the admins' list is another list
    ]
    for params in attempts:
        response = await client.get(URL, params=params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid_cursor"
    same = await client.get(URL, params={"cursor": cursor, "category": "PROGRAMMING", "limit": 5})
    assert same.status_code == 200  # the same filters, spelled differently, still fit


async def test_a_cursor_issued_in_an_earlier_form_still_continues_its_list(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    """Cursors made before an upgrade (the time as `datetime.isoformat()` gave it, which
    leaves out zero microseconds) are still in clients' hands during and after it."""
    courses = [
        await make_course(session, category="programming", created_at=T0 + timedelta(minutes=n))
        for n in range(3)
    ]
    await session.commit()
    codec = CursorCodec(settings.secret_key.get_secret_value())
    newest_first = sorted(courses, key=lambda c: c.created_at, reverse=True)
    served = newest_first[0]
    context = cursor_context(
        "public", CourseSort.newest, CourseFilters(published=True, category="programming")
    )
    cursor = codec.encode(context, [served.created_at.isoformat(), served.id])
    assert "T00:02:00+00:00" in served.created_at.isoformat()  # the short form

    response = await client.get(URL, params={"category": "programming", "cursor": cursor})

    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [c.id for c in newest_first[1:]]


async def test_a_course_page_shows_its_times_as_stored_in_utc_whatever_the_session_time_zone(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    created = datetime(2024, 3, 5, 6, 7, 8, 123000, tzinfo=UTC)
    await make_course(session, slug="zoned", created_at=created)
    await session.execute(
        update(Course).where(Course.slug == "zoned").values(updated_at=created + timedelta(hours=1))
    )
    await session.execute(text("SET LOCAL TIME ZONE 'America/St_Johns'"))  # UTC-03:30
    await session.commit()

    response = await client.get(f"{URL}/zoned")

    assert response.status_code == 200, response.text
    course = response.json()
    assert datetime.fromisoformat(course["createdAt"]) == created
    assert datetime.fromisoformat(course["updatedAt"]) == created + timedelta(hours=1)
    assert datetime.fromisoformat(course["createdAt"]).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("ARRAY[NULL, 'x']::text[]", ["x"]), ("NULL", []), ("ARRAY[NULL]::text[]", [])],
    ids=["null-element", "null-array", "only-null"],
)
async def test_node_era_null_features_read_as_absent_in_the_course_and_an_admin_edit(
    client: httpx.AsyncClient, session: AsyncSession, stored: str, shown: list[str]
) -> None:
    """`features` is a text[]: the Node app (or a hand edit) may have left it NULL, or with
    NULL elements, which the store never writes. The course page and an admin's edit of
    another field read them as absent, not a 500."""
    course = await make_course(session, slug="node-era", features=["a"])
    await session.execute(
        text(f'UPDATE "Course" SET features = {stored} WHERE id = :id'), {"id": course.id}
    )
    admin_headers = auth_headers(await make_admin(session))
    await session.commit()

    public = await client.get(f"{URL}/node-era")
    edited = await client.patch(
        f"/api/v1/admin/courses/{course.id}", json={"price": "5"}, headers=admin_headers
    )

    assert public.status_code == 200, public.text
    assert public.json()["features"] == shown
    assert edited.status_code == 200, edited.text
    assert edited.json()["features"] == shown


async def test_detail_hides_drafts_except_from_admins(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    live_id = (await make_course(session, slug="live", description="Hello", features=["a", "b"])).id
    await make_course(session, slug="draft", published=False)
    admin_headers = auth_headers(await make_admin(session))
    user_headers = auth_headers(await make_user(session))
    await session.commit()

    public = await client.get(f"{URL}/live")
    anonymous_draft = await client.get(f"{URL}/draft")
    user_draft = await client.get(f"{URL}/draft", headers=user_headers)
    admin_draft = await client.get(f"{URL}/draft", headers=admin_headers)
    missing = await client.get(f"{URL}/no-such-course")

    assert public.status_code == 200
    assert public.json()["id"] == live_id
    assert public.json()["description"] == "Hello"
    assert public.json()["features"] == ["a", "b"]
    assert public.json()["price"] == "499.00"
    assert "createdBy" not in public.json()
    assert anonymous_draft.status_code == 404
    assert anonymous_draft.json()["code"] == "course_not_found"
    assert user_draft.status_code == 404
    assert admin_draft.status_code == 200
    assert admin_draft.json()["isPublished"] is False
    assert missing.status_code == 404


async def test_a_bad_or_stale_token_on_a_course_page_is_a_401_not_an_anonymous_view(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The course page reads its caller off its read connection, not a session: a token
    is checked exactly as everywhere else (signature, then the user's current password
    and existence)."""
    await make_course(session, slug="live")
    admin = await make_admin(session)
    stale_headers = auth_headers(admin)
    deleted = await make_admin(session)
    deleted_headers = auth_headers(deleted)
    admin.password = "$2b$12$" + "x" * 53  # a password change revokes the old tokens
    await session.delete(deleted)
    await session.commit()

    garbage = await client.get(f"{URL}/live", headers={"Authorization": "Bearer not-a-token"})
    stale = await client.get(f"{URL}/live", headers=stale_headers)
    gone = await client.get(f"{URL}/live", headers=deleted_headers)

    for response in (garbage, stale, gone):
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "not_authenticated"


async def test_categories_count_published_courses(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_catalogue(session)

    response = await client.get("/api/v1/categories")

    assert response.status_code == 200
    assert response.json()["items"] == [
        {"category": "cooking", "count": 1},
        {"category": "design", "count": 2},
        {"category": "programming", "count": 3},  # the draft is not counted
    ]


@pytest.mark.parametrize("path", [URL, f"{URL}/etag-course", "/api/v1/categories"])
async def test_etag_and_if_none_match(
    client: httpx.AsyncClient, session: AsyncSession, path: str
) -> None:
    course_id = (await make_course(session, slug="etag-course")).id
    await session.commit()

    first = await client.get(path)
    etag = first.headers["etag"]
    unchanged = await client.get(path, headers={"If-None-Match": etag})
    weak_in_list = await client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
    other = await client.get(path, headers={"If-None-Match": '"something-else"'})
    await session.execute(update(Course).where(Course.id == course_id).values(category="changed"))
    await session.commit()
    changed = await client.get(path, headers={"If-None-Match": etag})

    assert first.status_code == 200
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert weak_in_list.status_code == 304
    assert other.status_code == 200
    assert other.headers["etag"] == etag
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


@pytest.mark.parametrize("path", [URL, f"{URL}/vary-course", "/api/v1/categories"])
async def test_tagged_responses_vary_by_the_caller(
    client: httpx.AsyncClient, session: AsyncSession, path: str
) -> None:
    await make_course(session, slug="vary-course")
    await session.commit()

    first = await client.get(path)
    revalidated = await client.get(path, headers={"If-None-Match": first.headers["etag"]})

    assert first.status_code == 200 and "etag" in first.headers
    assert "Authorization" in [v.strip() for v in first.headers["vary"].split(",")]
    assert revalidated.status_code == 304
    assert "Authorization" in [v.strip() for v in revalidated.headers["vary"].split(",")]


async def test_an_admins_draft_response_varies_and_its_tag_gives_a_visitor_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Why the responses vary: the same URL answers an admin with a draft and a visitor
    with a 404, so a cache keyed on the URL alone would leak the draft."""
    admin = await make_admin(session)
    await make_course(session, slug="secret-draft", published=False)
    await session.commit()

    as_admin = await client.get(f"{URL}/secret-draft", headers=auth_headers(admin))
    as_visitor = await client.get(
        f"{URL}/secret-draft", headers={"If-None-Match": as_admin.headers["etag"]}
    )

    assert as_admin.status_code == 200
    assert "Authorization" in as_admin.headers["vary"]
    assert as_visitor.status_code == 404  # not a 304 on the admin's tag


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "Authorization"),
        ("Accept-Encoding", "Accept-Encoding, Authorization"),
        ("accept-encoding, authorization", "accept-encoding, authorization"),
        ("*", "*"),
    ],
)
def test_vary_is_added_once(existing: str | None, expected: str) -> None:
    assert with_vary(existing) == expected


async def test_price_filters_select_prices_as_shown_to_the_paisa(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Prices of more places (from the Node app's DECIMAL(65,30)) are shown, and sold, half-up
    to the paisa: a filter selects by what is shown. 1499.995 and 1500.004999… show (and
    check out) as 1500.00; 1500.005 as 1500.01; 0.004 as a free 0.00."""
    prices = {
        "below": "1499.994999",
        "up_to_1500": "1499.995",
        "exactly": "1500",
        "down_to_1500": "1500.004999999999999999999999999",
        "above": "1500.005",
        "almost_free": "0.004",
    }
    c = {name: await make_course(session, price=price) for name, price in prices.items()}
    await session.commit()

    def expect(*names: str) -> set[str]:
        return {c[name].id for name in names}

    shown = {item["id"]: item["price"] for item in (await client.get(URL)).json()["items"]}
    assert shown[c["up_to_1500"].id] == shown[c["down_to_1500"].id] == "1500.00"
    at_1500 = await ids(client, min_price="1500", max_price="1500")
    assert set(at_1500) == expect("up_to_1500", "exactly", "down_to_1500")
    assert set(await ids(client, max_price="1499.99")) == expect("below", "almost_free")
    assert set(await ids(client, min_price="1500.01")) == expect("above")
    assert set(await ids(client, free="true")) == expect("almost_free")
    assert expect("almost_free").isdisjoint(await ids(client, free="false"))
