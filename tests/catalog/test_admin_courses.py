"""Managing the catalogue: POST/PATCH/DELETE/GET /admin/courses.

Tests commit their setup (a savepoint release, inside the test's outer transaction) so that a
request that fails, and so rolls its own work back, does not take the setup with it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.models import Course
from tests.factories import (
    auth_headers,
    make_admin,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)

URL = "/api/v1/admin/courses"


def course_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Python for Data Science",
        "description": "Pandas, NumPy and plots.",
        "thumbnail": "https://cdn.example.com/python.png",
        "duration": 600,
        "price": "1499.00",
        "features": ["Lifetime access", "Certificate"],
        "category": "Programming",
        "level": "beginner",
    }
    body.update(overrides)
    return body


async def course_count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Course))).scalar_one()


async def test_admin_creates_a_draft_with_a_slug_from_the_title(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await session.commit()

    response = await client.post(URL, json=course_body(), headers=auth_headers(admin))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["slug"] == "python-for-data-science"
    assert body["category"] == "programming"
    assert body["price"] == "1499.00"
    assert body["isPublished"] is False
    assert body["isFeatured"] is False
    assert body["createdBy"] == admin.id
    stored = await session.get(Course, body["id"])
    assert stored is not None
    assert stored.price == Decimal("1499.00")
    assert stored.features == ["Lifetime access", "Certificate"]
    assert stored.created_by == admin.id


async def test_slug_is_transliterated_and_made_unique(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    headers = auth_headers(admin)
    await make_course(session, slug="cafe-deja-vu-2024")  # shares the prefix; must not matter
    await session.commit()

    slugs = []
    for _ in range(3):
        response = await client.post(
            URL, json=course_body(title="  Café Déjà Vu!  "), headers=headers
        )
        assert response.status_code == 201, response.text
        slugs.append(response.json()["slug"])
    unicode_title = await client.post(URL, json=course_body(title="Привет мир"), headers=headers)
    symbols_only = await client.post(URL, json=course_body(title="!!! ???"), headers=headers)

    assert slugs == ["cafe-deja-vu", "cafe-deja-vu-2", "cafe-deja-vu-3"]
    assert unicode_title.json()["slug"] == "privet-mir"
    assert symbols_only.json()["slug"] == "course"
    assert (await client.post(URL, json=course_body(title="Café déjà vu"), headers=headers)).json()[
        "slug"
    ] == "cafe-deja-vu-4"


async def test_explicit_slug_must_be_valid_and_free(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    headers = auth_headers(admin)
    await make_course(session, slug="taken")
    before = await course_count(session)
    await session.commit()

    invalid = await client.post(URL, json=course_body(slug="Not A Slug"), headers=headers)
    taken = await client.post(URL, json=course_body(slug="taken"), headers=headers)
    free = await client.post(URL, json=course_body(slug="my-own-slug"), headers=headers)

    assert invalid.status_code == 422
    assert [e["field"] for e in invalid.json()["errors"]] == ["slug"]
    assert taken.status_code == 409
    assert taken.json()["code"] == "slug_taken"
    assert taken.headers["content-type"] == "application/problem+json"
    assert free.status_code == 201
    assert free.json()["slug"] == "my-own-slug"
    assert await course_count(session) == before + 1


async def test_validation_reports_every_bad_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    body = course_body(
        title="ab",
        description="x" * 20_001,
        thumbnail="ftp://example.com/x.png",
        duration=0,
        price="10.005",
        features=["ok", ""],
        level="expert",
        category="  ",
        isPublished="yes",  # a JSON boolean only: a course is not published by a guess
        isFeatured=1,
    )
    headers = auth_headers(admin)
    await session.commit()

    response = await client.post(URL, json=body, headers=headers)

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed"
    fields = {e["field"] for e in problem["errors"]}
    assert {
        "title",
        "description",
        "thumbnail",
        "duration",
        "price",
        "features.1",
        "level",
        "category",
        "isPublished",
        "isFeatured",
    } <= fields
    assert await course_count(session) == 0
    too_many = await client.post(URL, json=course_body(features=["f"] * 31), headers=headers)
    assert too_many.status_code == 422
    assert [e["field"] for e in too_many.json()["errors"]] == ["features"]


async def test_bounds_that_are_allowed(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    body = course_body(
        title="abc",
        description="x" * 20_000,
        thumbnail="http://example.com/a.png",
        duration=100_000,
        price=0,
        features=["f" * 200] * 30,
        level="all-levels",
    )
    await session.commit()

    response = await client.post(URL, json=body, headers=auth_headers(admin))

    assert response.status_code == 201, response.text
    assert response.json()["price"] == "0.00"
    assert response.json()["level"] == "all-levels"


async def test_negative_price_and_too_long_title_are_rejected(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    headers = auth_headers(admin)
    await session.commit()

    negative = await client.post(URL, json=course_body(price="-1"), headers=headers)
    long_title = await client.post(URL, json=course_body(title="t" * 201), headers=headers)

    assert negative.status_code == 422
    assert negative.json()["errors"][0]["field"] == "price"
    assert long_title.status_code == 422
    assert long_title.json()["errors"][0]["field"] == "title"


async def test_only_admins_manage_courses(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    course_id = (await make_course(session)).id
    headers = auth_headers(user)
    await session.commit()

    anonymous = await client.post(URL, json=course_body())
    not_admin = await client.post(URL, json=course_body(), headers=headers)
    patch = await client.patch(f"{URL}/{course_id}", json={"price": "1"}, headers=headers)
    delete = await client.delete(f"{URL}/{course_id}", headers=headers)
    listing = await client.get(URL, headers=headers)

    assert anonymous.status_code == 401
    assert [r.status_code for r in (not_admin, patch, delete, listing)] == [403] * 4


async def test_patch_publishes_features_and_changes_only_what_is_sent(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    course = await make_course(
        session, title="Old title", published=False, description="keep me", price="100.00"
    )
    before_update = course.updated_at
    await session.commit()

    response = await client.patch(
        f"{URL}/{course.id}",
        json={"isPublished": True, "isFeatured": True, "price": "79.50", "category": "DESIGN"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["isPublished"] is True
    assert body["isFeatured"] is True
    assert body["price"] == "79.50"
    assert body["category"] == "design"
    assert body["title"] == "Old title"
    assert body["description"] == "keep me"
    assert body["slug"] == course.slug
    await session.refresh(course)
    assert course.is_published is True
    assert course.price == Decimal("79.50")
    assert course.updated_at >= before_update


async def test_patch_rejects_null_for_required_fields_but_clears_optional_ones(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    course_id = (await make_course(session, description="something")).id
    headers = auth_headers(admin)
    await session.commit()

    nulls = await client.patch(
        f"{URL}/{course_id}", json={"title": None, "price": None}, headers=headers
    )
    guessed = await client.patch(
        f"{URL}/{course_id}", json={"isPublished": "true"}, headers=headers
    )
    cleared = await client.patch(f"{URL}/{course_id}", json={"description": None}, headers=headers)

    assert nulls.status_code == 422
    assert {e["field"] for e in nulls.json()["errors"]} == {"title", "price"}
    assert guessed.status_code == 422
    assert cleared.status_code == 200
    assert cleared.json()["description"] is None


async def test_patch_slug_must_be_free(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    await make_course(session, slug="already-here")
    course_id = (await make_course(session, slug="mine")).id
    headers = auth_headers(admin)
    await session.commit()

    taken = await client.patch(f"{URL}/{course_id}", json={"slug": "already-here"}, headers=headers)
    renamed = await client.patch(
        f"{URL}/{course_id}", json={"slug": "mine-renamed"}, headers=headers
    )
    missing = await client.patch(f"{URL}/no-such-id", json={"price": "1.00"}, headers=headers)

    assert taken.status_code == 409
    assert taken.json()["code"] == "slug_taken"
    assert renamed.status_code == 200
    assert renamed.json()["slug"] == "mine-renamed"
    assert missing.status_code == 404
    assert missing.json()["code"] == "course_not_found"


async def test_delete_a_course_nobody_bought(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    course = await make_course(session)
    await session.commit()

    response = await client.delete(f"{URL}/{course.id}", headers=auth_headers(admin))
    again = await client.delete(f"{URL}/{course.id}", headers=auth_headers(admin))

    assert response.status_code == 204
    assert again.status_code == 404
    assert (await session.execute(select(Course.id).where(Course.id == course.id))).first() is None


async def test_a_course_with_orders_or_enrollments_cannot_be_deleted(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    buyer = await make_user(session)
    ordered = await make_course(session)
    enrolled = await make_course(session)
    await make_order(session, user=buyer, courses=[ordered])
    await make_enrollment(session, user=buyer, course=enrolled)
    course_ids = [ordered.id, enrolled.id]
    headers = auth_headers(admin)
    await session.commit()

    for course_id in course_ids:
        response = await client.delete(f"{URL}/{course_id}", headers=headers)
        assert response.status_code == 409
        assert response.json()["code"] == "course_in_use"
        assert "unpublish" in response.json()["detail"]
        still_there = select(Course.id).where(Course.id == course_id)
        assert (await session.execute(still_there)).scalar_one() == course_id


async def test_admin_list_includes_drafts_and_filters_by_published(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    draft = await make_course(session, published=False)
    live = await make_course(session, published=True)
    headers = auth_headers(admin)
    await session.commit()

    everything = await client.get(URL, headers=headers)
    drafts = await client.get(URL, params={"published": "false"}, headers=headers)
    published = await client.get(URL, params={"published": "true"}, headers=headers)

    assert {c["id"] for c in everything.json()["items"]} == {draft.id, live.id}
    assert [c["id"] for c in drafts.json()["items"]] == [draft.id]
    assert [c["id"] for c in published.json()["items"]] == [live.id]
    assert drafts.json()["items"][0]["isPublished"] is False
    detail = await client.get(f"{URL}/{draft.id}", headers=headers)
    assert detail.status_code == 200
    assert detail.json()["createdBy"] == draft.created_by


async def test_concurrent_creates_with_one_title_get_distinct_slugs(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
    headers = auth_headers(admin)

    responses = await asyncio.gather(
        *(
            committed_client.post(URL, json=course_body(title="Rust in Action"), headers=headers)
            for _ in range(4)
        )
    )

    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    assert sorted(r.json()["slug"] for r in responses) == [
        "rust-in-action",
        "rust-in-action-2",
        "rust-in-action-3",
        "rust-in-action-4",
    ]


async def test_admin_list_shows_created_at_as_stored_in_utc_whatever_the_session_time_zone(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The list reads createdAt as timezone('UTC', …) (an aware timestamp from asyncpg), so
    the instant is the stored one even when the connection's TimeZone is not UTC."""
    admin = await make_admin(session)
    created = datetime(2024, 3, 5, 6, 7, 8, 123000, tzinfo=UTC)
    course = await make_course(session, published=False, created_at=created)
    await session.execute(text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
    await session.commit()

    response = await client.get(URL, headers=auth_headers(admin))

    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["id"] == course.id
    assert datetime.fromisoformat(item["createdAt"]) == created
    assert datetime.fromisoformat(item["createdAt"]).utcoffset() == timedelta(0)
