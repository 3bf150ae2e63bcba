"""The data layer's account operations (DATABASE.md's create / read with relations /
update / delete / transaction), each in one statement."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.core.database import Database
from coursehub.models import CourseEnrollment, Role, User, UserPreference, UserProfile
from coursehub.users import repository, service
from coursehub.users.errors import EmailTaken, UsernameTaken
from tests.factories import (
    make_course,
    make_enrollment,
    make_order,
    make_preferences,
    make_profile,
    make_user,
)
from tests.queries import captured

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$aGFzaGhhc2hoYXNo"


async def count(session: AsyncSession, model: type[object], user_id: str) -> int:
    column = User.id if model is User else model.user_id  # type: ignore[attr-defined]
    statement = select(func.count()).select_from(model).where(column == user_id)
    return (await session.execute(statement)).scalar_one()


async def test_the_four_operations_each_take_one_statement(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    with captured(engine) as log:
        user = await repository.create_user(
            session, email="ada@example.com", username="ada", password_hash=HASH
        )
    assert log.count == 1
    assert user.role is Role.user and user.created_at.tzinfo is not None
    assert user in session and not session.new
    assert user.profile is None and user.preferences is None  # loaded: none yet
    session.expunge_all()

    with captured(engine) as log:
        loaded = await repository.get_user_with_profile(session, user.id)
    assert log.count == 1
    assert loaded is not None and loaded.email == "ada@example.com"
    assert loaded.profile is None  # loaded (no lazy-load error), and there is none

    with captured(engine) as log:
        assert await repository.update_user_role(session, user_id=user.id, role=Role.admin)
    assert log.count == 1
    role = await session.scalar(select(User.role).where(User.id == user.id))
    assert role is Role.admin

    with captured(engine) as log:
        assert await repository.delete_user(session, user_id=user.id)
    assert log.count == 1
    assert await count(session, User, user.id) == 0


async def test_missing_users_are_reported_not_raised(session: AsyncSession) -> None:
    assert await repository.get_user_with_profile(session, "no-such-id") is None
    assert not await repository.update_user_role(session, user_id="no-such-id", role=Role.admin)
    assert not await repository.delete_user(session, user_id="no-such-id")


async def test_user_and_profile_are_created_together_in_one_statement(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    with captured(engine) as log:
        user = await service.create_user_with_profile(
            session,
            email="Grace@Example.com",
            username="Grace",
            password_hash=HASH,
            first_name="Grace",
            last_name="Hopper",
        )
    assert log.count == 1
    assert user.email == "grace@example.com" and user.username == "grace"
    assert user.profile is not None and user.profile.last_name == "Hopper"
    # Both the session's as written: nothing pending to be inserted again at a flush.
    assert user in session and user.profile in session and not session.new
    assert user.preferences is None  # loaded: there are none yet
    session.expunge_all()

    loaded = await repository.get_user_with_profile(session, user.id)
    assert loaded is not None and loaded.profile is not None
    assert (loaded.profile.first_name, loaded.profile.last_name) == ("Grace", "Hopper")


async def test_users_with_profiles_are_freed_without_the_garbage_collector(
    committed_db: Database,
) -> None:
    """No reference cycle between a user and their profile, made or read: they are freed
    when the last reference goes, instead of piling up for the cyclic collector (whose full collections
    stall the event loop)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free goes to gc.garbage
    try:
        with pytest.raises(LookupError):
            async with committed_db.write_transaction() as writer:
                made = await service.create_user_with_profile(
                    writer, email="cycle@example.com", username="cycle", password_hash=HASH
                )
                # Read back with the profile, as the admins' and the account's views do.
                assert await repository.get_user_with_profile(writer, made.id) is not None
                assert await repository.get_user_detail(writer, made.id) is not None
                del made
                raise LookupError  # rolled back: nothing to clean up
        gc.collect()
        cyclic = [obj for obj in gc.garbage if isinstance(obj, User | UserProfile)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert cyclic == []


async def test_a_failed_user_and_profile_transaction_leaves_neither(
    session: AsyncSession,
) -> None:
    await make_user(session, email="taken@example.com", username="first")
    profiles_before = (
        await session.execute(select(func.count()).select_from(UserProfile))
    ).scalar_one()

    with pytest.raises(EmailTaken):
        async with session.begin_nested():
            await service.create_user_with_profile(
                session,
                email="taken@example.com",
                username="second",
                password_hash=HASH,
                first_name="Nope",
                last_name="Nope",
            )
    with pytest.raises(UsernameTaken):
        async with session.begin_nested():
            await service.create_user_with_profile(
                session,
                email="other@example.com",
                username="FIRST",
                password_hash=HASH,
                first_name="Nope",
                last_name="Nope",
            )

    profiles_after = (
        await session.execute(select(func.count()).select_from(UserProfile))
    ).scalar_one()
    assert profiles_after == profiles_before
    assert await session.scalar(select(User).where(User.username == "second")) is None


async def test_delete_takes_profile_preferences_and_enrollments_with_it(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    await make_profile(session, user=user, first_name="Lin")
    await make_preferences(session, user=user, theme="dark")
    await make_enrollment(session, user=user, course=await make_course(session))
    other = await make_user(session)
    await make_profile(session, user=other, first_name="Stays")

    assert await repository.delete_user(session, user_id=user.id)

    for model in (User, UserProfile, UserPreference, CourseEnrollment):
        assert await count(session, model, user.id) == 0
    assert await count(session, UserProfile, other.id) == 1


async def test_the_database_refuses_to_delete_a_user_with_orders(session: AsyncSession) -> None:
    user = await make_user(session)
    await make_order(session, user=user, courses=[await make_course(session)])

    with pytest.raises(IntegrityError):
        async with session.begin_nested():
            await repository.delete_user(session, user_id=user.id)

    assert await count(session, User, user.id) == 1


async def test_logins_match_any_case_including_legacy_mixed_case_rows(
    session: AsyncSession,
) -> None:
    legacy = await make_user(session, email="Mixed.Case@Example.COM", username="LegacyBob")

    for login in ("mixed.case@example.com", "MIXED.CASE@example.com", "legacybob", "LEGACYBOB"):
        found = await repository.find_user_by_login(session, login)
        assert found is not None and found.id == legacy.id, login
    assert await repository.find_user_by_login(session, "legacy") is None

    taken = await repository.taken_fields(session, email="mixed.case@example.com", username="x")
    assert taken.email and not taken.username
    taken = await repository.taken_fields(
        session, email="mixed.case@example.com", username="legacybob", exclude_user_id=legacy.id
    )
    assert not taken.email and not taken.username


async def test_user_detail_is_one_query(session: AsyncSession, engine: AsyncEngine) -> None:
    user = await make_user(session)
    await make_profile(session, user=user, first_name="Ann")
    await make_preferences(session, user=user, language="hi")
    courses = [await make_course(session) for _ in range(3)]
    await make_order(session, user=user, courses=courses[:2])
    await make_order(session, user=user, courses=courses[2:])
    for course in courses:
        await make_enrollment(session, user=user, course=course)
    session.expunge_all()

    with captured(engine) as log:
        detail = await repository.get_user_detail(session, user.id)

    assert log.count == 1
    assert detail is not None
    assert (detail.orders_count, detail.enrollments_count) == (2, 3)
    assert detail.user.profile is not None and detail.user.profile.first_name == "Ann"
    assert detail.user.preferences is not None and detail.user.preferences.language == "hi"
