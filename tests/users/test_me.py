"""The signed-in user: GET/PATCH/DELETE /me, /me/profile, /me/preferences — and never
anybody else's rows.

Tests commit their setup (a savepoint release inside the test's transaction) so that a
request that fails, and rolls its own work back, does not take the setup with it. A
failed request also expires the shared session's objects: keep plain values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.auth import dependencies as auth_dependencies
from coursehub.core.database import Database
from coursehub.core.security import hash_password, verify_password
from coursehub.core.sql import Reader
from coursehub.models import (
    CourseEnrollment,
    Order,
    User,
    UserPreference,
    UserProfile,
)
from coursehub.users import repository as users_repository
from coursehub.users import service as users_service
from tests.factories import (
    DEFAULT_PASSWORD,
    auth_headers,
    bearer,
    make_admin,
    make_course,
    make_enrollment,
    make_order,
    make_preferences,
    make_profile,
    make_user,
)

ME = "/api/v1/me"
PROFILE = "/api/v1/me/profile"
PREFERENCES = "/api/v1/me/preferences"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


async def rows(session: AsyncSession, model: Any, user_id: str) -> int:
    column = model.id if model is User else model.user_id
    statement = select(func.count()).select_from(model).where(column == user_id)
    return (await session.execute(statement)).scalar_one()


# --- the account ----------------------------------------------------------------------------


async def test_get_me_is_the_callers_account_without_the_hash(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, email="me@example.com", username="me_myself")
    await session.commit()

    response = await client.get(ME, headers=auth_headers(user))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id and body["email"] == "me@example.com"
    assert set(body) == {"id", "email", "username", "role", "createdAt", "updatedAt"}


async def test_patch_me_changes_email_and_username_lower_cased(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()

    response = await client.patch(
        ME, json={"email": "New@Example.com", "username": "New.Name"}, headers=auth_headers(user)
    )

    assert response.status_code == 200, response.text
    assert (response.json()["email"], response.json()["username"]) == (
        "new@example.com",
        "new.name",
    )
    stored = await session.get(User, user.id)
    assert stored is not None and stored.username == "new.name"


async def test_a_legacy_mixed_case_username_can_be_lower_cased_by_its_owner(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, username="LegacyBob")
    await session.commit()

    response = await client.patch(ME, json={"username": "legacybob"}, headers=auth_headers(user))

    assert response.status_code == 200, response.text
    assert response.json()["username"] == "legacybob"


async def test_patch_me_conflicts_like_sign_up(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, email="Other@Example.com", username="Other")
    user = await make_user(session)
    await session.commit()
    user_id, headers = user.id, auth_headers(user)

    email = await client.patch(ME, json={"email": "other@example.com"}, headers=headers)
    username = await client.patch(ME, json={"username": "OTHER"}, headers=headers)
    null = await client.patch(ME, json={"email": None}, headers=headers)
    bad = await client.patch(ME, json={"username": "no spaces"}, headers=headers)

    assert email.status_code == 409 and email.json()["code"] == "email_taken"
    assert username.status_code == 409 and username.json()["code"] == "username_taken"
    assert username.json()["errors"][0]["field"] == "username"
    assert null.status_code == 422 and bad.status_code == 422
    stored = await session.scalar(select(User.username).where(User.id == user_id))
    assert stored is not None and stored.startswith("user")


# --- profile ---------------------------------------------------------------------------------


async def test_profile_is_empty_until_first_put_then_created(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    headers = auth_headers(user)

    empty = await client.get(PROFILE, headers=headers)
    assert empty.status_code == 200
    assert empty.json() == {
        "firstName": None,
        "lastName": None,
        "bio": None,
        "phoneNumber": None,
        "updatedAt": None,
    }
    assert await rows(session, UserProfile, user.id) == 0

    put = await client.put(
        PROFILE,
        json={
            "firstName": " Priya ",
            "lastName": "Sharma",
            "bio": "Learns things.",
            "phoneNumber": "+91 98765 43210",
        },
        headers=headers,
    )

    assert put.status_code == 200, put.text
    assert put.json()["firstName"] == "Priya"
    assert put.json()["phoneNumber"] == "+919876543210"  # stored as E.164
    profile = await session.scalar(select(UserProfile).where(UserProfile.user_id == user.id))
    assert profile is not None and profile.phone_number == "+919876543210"
    assert (await client.get(PROFILE, headers=headers)).json()["lastName"] == "Sharma"


async def test_blank_profile_fields_mean_none(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()

    put = await client.put(
        PROFILE,
        json={"firstName": "", "lastName": "  ", "bio": "", "phoneNumber": ""},
        headers=auth_headers(user),
    )

    assert put.status_code == 200, put.text
    assert {k: put.json()[k] for k in ("firstName", "lastName", "bio", "phoneNumber")} == {
        "firstName": None,
        "lastName": None,
        "bio": None,
        "phoneNumber": None,
    }


async def test_put_profile_replaces_it_whole(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await make_profile(session, user=user, first_name="Old", bio="Old bio")
    await session.commit()

    response = await client.put(PROFILE, json={"firstName": "New"}, headers=auth_headers(user))

    assert response.status_code == 200
    assert response.json()["firstName"] == "New" and response.json()["bio"] is None
    assert await rows(session, UserProfile, user.id) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"firstName": "x" * 101}, "firstName"),
        ({"lastName": "x" * 101}, "lastName"),
        ({"bio": "x" * 2001}, "bio"),
        ({"phoneNumber": "98765 43210"}, "phoneNumber"),  # not international
        ({"phoneNumber": "+91 12"}, "phoneNumber"),
        ({"phoneNumber": "call me"}, "phoneNumber"),
        ({"nickname": "x"}, "nickname"),
    ],
)
async def test_invalid_profile_is_422_per_field_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any], field: str
) -> None:
    user = await make_user(session)
    await session.commit()
    user_id = user.id

    response = await client.put(PROFILE, json=body, headers=auth_headers(user))

    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await rows(session, UserProfile, user_id) == 0


# --- preferences -----------------------------------------------------------------------------


async def test_preferences_default_then_patch_changes_only_what_is_sent(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    headers = auth_headers(user)

    defaults = await client.get(PREFERENCES, headers=headers)
    assert defaults.json() == {"theme": "light", "language": "en", "notifications": True}

    first = await client.patch(PREFERENCES, json={"theme": "dark"}, headers=headers)
    second = await client.patch(PREFERENCES, json={"language": "hi"}, headers=headers)

    assert first.json() == {"theme": "dark", "language": "en", "notifications": True}
    assert second.json() == {"theme": "dark", "language": "hi", "notifications": True}
    stored = await session.scalar(select(UserPreference).where(UserPreference.user_id == user.id))
    assert stored is not None and (stored.theme, stored.language) == ("dark", "hi")
    assert await rows(session, UserPreference, user.id) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"theme": "blue"},
        {"language": "xx"},
        {"language": "english"},
        {"notifications": None},
        {"notifications": "yes"},
        {"notifications": 0},
    ],
)
async def test_invalid_preferences_are_422(
    client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any]
) -> None:
    user = await make_user(session)
    await make_preferences(session, user=user, theme="dark")
    await session.commit()
    user_id = user.id

    response = await client.patch(PREFERENCES, json=body, headers=auth_headers(user))

    assert response.status_code == 422
    stored = await session.scalar(
        select(UserPreference.theme).where(UserPreference.user_id == user_id)
    )
    assert stored == "dark"


# --- deleting the account --------------------------------------------------------------------


async def test_delete_me_without_orders_deletes_everything_of_the_user(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await make_profile(session, user=user, first_name="Gone")
    await make_preferences(session, user=user)
    await make_enrollment(session, user=user, course=await make_course(session))
    await session.commit()
    user_id, username, headers = user.id, user.username, auth_headers(user)

    response = await client.request(
        "DELETE", ME, json={"password": DEFAULT_PASSWORD}, headers=headers
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "deleted"}
    for model in (User, UserProfile, UserPreference, CourseEnrollment):
        assert await rows(session, model, user_id) == 0
    assert (await client.get(ME, headers=headers)).status_code == 401
    login = await client.post(LOGIN, json={"login": username, "password": DEFAULT_PASSWORD})
    assert login.status_code == 401


async def test_delete_me_with_orders_anonymises_and_keeps_the_orders(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, email="buyer@example.com", username="buyer")
    await make_profile(session, user=user, first_name="Private", phone_number="+919876543210")
    await make_preferences(session, user=user)
    course = await make_course(session)
    order = await make_order(session, user=user, courses=[course])
    await make_enrollment(session, user=user, course=course, order=order)
    await session.commit()
    user_id, headers = user.id, auth_headers(user)

    response = await client.request(
        "DELETE", ME, json={"password": DEFAULT_PASSWORD}, headers=headers
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "anonymised"}
    stored = await session.scalar(
        select(User).where(User.id == user_id).execution_options(populate_existing=True)
    )
    assert stored is not None
    new_email, new_username = stored.email, stored.username
    assert "buyer" not in new_email and "buyer" not in new_username
    assert await rows(session, UserProfile, user_id) == 0
    assert await rows(session, UserPreference, user_id) == 0
    assert await rows(session, Order, user_id) == 1
    assert (await client.get(ME, headers=headers)).status_code == 401
    for login in ("buyer", "buyer@example.com", new_email, new_username):
        response = await client.post(LOGIN, json={"login": login, "password": DEFAULT_PASSWORD})
        assert response.status_code == 401
    # The email and username are free again.
    again = await client.post(
        "/api/v1/auth/register",
        json={"email": "buyer@example.com", "username": "buyer", "password": "long-enough"},
    )
    assert again.status_code == 201


@pytest.mark.parametrize("has_orders", [False, True], ids=["deleted", "anonymised"])
async def test_a_refresh_token_is_rejected_after_delete_me(
    client: httpx.AsyncClient, session: AsyncSession, has_orders: bool
) -> None:
    user = await make_user(session)
    if has_orders:
        await make_order(session, user=user, courses=[await make_course(session)])
    await session.commit()
    signed_in = await client.post(
        LOGIN, json={"login": user.username, "password": DEFAULT_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    # The refresh token works until the account goes.
    still_good = await client.post(REFRESH, json={"refreshToken": tokens["refreshToken"]})
    assert still_good.status_code == 200, still_good.text

    response = await client.request(
        "DELETE",
        ME,
        json={"password": DEFAULT_PASSWORD},
        headers=bearer(tokens["accessToken"]),
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "anonymised" if has_orders else "deleted"}
    for refresh_token in (tokens["refreshToken"], still_good.json()["refreshToken"]):
        refreshed = await client.post(REFRESH, json={"refreshToken": refresh_token})
        assert refreshed.status_code == 401, refreshed.text
        assert refreshed.json()["code"] == "invalid_refresh_token"


async def test_delete_me_needs_the_password(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    user_id, headers = user.id, auth_headers(user)

    wrong = await client.request("DELETE", ME, json={"password": "not-it-at-all"}, headers=headers)
    missing = await client.request("DELETE", ME, headers=headers)

    assert wrong.status_code == 403 and wrong.json()["code"] == "wrong_password"
    assert missing.status_code == 422
    assert await rows(session, User, user_id) == 1


async def test_the_last_admin_cannot_delete_their_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await session.commit()
    admin_id, headers = admin.id, auth_headers(admin)

    response = await client.request(
        "DELETE", ME, json={"password": DEFAULT_PASSWORD}, headers=headers
    )

    assert response.status_code == 409 and response.json()["code"] == "last_admin"
    assert await rows(session, User, admin_id) == 1


# --- nobody else's data ----------------------------------------------------------------------


async def test_a_user_never_reads_or_changes_another_users_data(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    victim = await make_user(session, email="victim@example.com")
    await make_profile(session, user=victim, first_name="Victim", bio="secret bio")
    await make_preferences(session, user=victim, theme="dark")
    attacker = await make_user(session)
    await session.commit()
    victim_id = victim.id
    headers = auth_headers(attacker)

    # Own endpoints answer with the caller's rows only.
    profile = await client.get(PROFILE, headers=headers)
    assert profile.json()["firstName"] is None and "secret bio" not in profile.text
    assert (await client.get(PREFERENCES, headers=headers)).json()["theme"] == "light"
    # Writing one's own rows never touches the victim's.
    await client.put(PROFILE, json={"firstName": "Attacker"}, headers=headers)
    await client.patch(PREFERENCES, json={"theme": "system"}, headers=headers)
    # Ids smuggled into bodies are rejected, not followed.
    smuggled = await client.put(
        PROFILE, json={"userId": victim_id, "firstName": "Hacked"}, headers=headers
    )
    assert smuggled.status_code == 422
    # Addressing the victim by id is an admin's route: forbidden.
    for method, body in (("GET", None), ("PATCH", {"role": "admin"}), ("DELETE", None)):
        response = await client.request(
            method, f"/api/v1/admin/users/{victim_id}", json=body, headers=headers
        )
        assert response.status_code == 403, (method, response.text)
    # Taking the victim's email is a conflict, not a takeover.
    taken = await client.patch(ME, json={"email": "victim@example.com"}, headers=headers)
    assert taken.status_code == 409

    victim_profile = await session.scalar(
        select(UserProfile)
        .where(UserProfile.user_id == victim_id)
        .execution_options(populate_existing=True)
    )
    assert victim_profile is not None
    assert (victim_profile.first_name, victim_profile.bio) == ("Victim", "secret bio")
    theme = await session.scalar(
        select(UserPreference.theme).where(UserPreference.user_id == victim_id)
    )
    assert theme == "dark"
    role = await session.scalar(select(User.role).where(User.id == victim_id))
    assert role is not None and role.value == "user"


async def test_simultaneous_first_writes_make_one_profile_and_one_preferences_row(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
    headers = auth_headers(user)

    responses = await asyncio.gather(
        *(
            committed_client.put(PROFILE, json={"firstName": f"Name{i}"}, headers=headers)
            for i in range(6)
        ),
        *(
            committed_client.patch(PREFERENCES, json={"theme": "dark"}, headers=headers)
            for _ in range(6)
        ),
    )

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    async with committed_db.transaction() as session:
        assert await rows(session, UserProfile, user.id) == 1
        assert await rows(session, UserPreference, user.id) == 1


def after_the_callers_read(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]
) -> None:
    """Run `meanwhile` (another request's change, committed) right after a request has read
    its caller for its token, and before it goes on with what it read."""
    read_token_user = users_repository.get_user_by_id  # as auth/dependencies.py imports it

    async def read_then_meanwhile(reader: Reader, read_id: str) -> User | None:
        found = await read_token_user(reader, read_id)
        await meanwhile()
        return found

    monkeypatch.setattr(auth_dependencies, "get_user_by_id", read_then_meanwhile)


async def change_password_elsewhere(database: Database, user_id: str, password_hash: str) -> None:
    async with database.transaction() as other:
        await other.execute(update(User).where(User.id == user_id).values(password=password_hash))


async def remove_elsewhere(database: Database, user_id: str) -> None:
    async with database.write_transaction() as other:
        await users_service.remove_account(other, user_id)


@pytest.mark.parametrize("with_orders", [False, True], ids=["deleted", "anonymised"])
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PUT", PROFILE, {"firstName": "Late"}),
        ("PATCH", PREFERENCES, {"theme": "dark"}),
        ("PATCH", ME, {"email": "late@example.com"}),
        # Removing it again (a DELETE /me sent twice, or racing an admin's removal): 401 as
        # well, not the 404 user_not_found of the lock finding no row.
        ("DELETE", ME, {"password": DEFAULT_PASSWORD}),
    ],
)
async def test_a_change_racing_the_accounts_removal_is_401_and_writes_nothing(
    committed_db: Database,
    committed_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    url: str,
    body: dict[str, str],
    with_orders: bool,
) -> None:
    """The account is removed (deleted, or anonymised as one with orders is) after the
    request's token was checked and before its change is written: the change must be
    refused as any request after the removal is, not fail on the profile's foreign key
    (500) nor write a new email back onto the anonymised row."""
    async with committed_db.transaction() as session:
        user = await make_user(session)
        if with_orders:
            await make_order(session, user=user, courses=[await make_course(session)])
    user_id, headers = user.id, auth_headers(user)
    after_the_callers_read(monkeypatch, lambda: remove_elsewhere(committed_db, user_id))

    response = await committed_client.request(method, url, json=body, headers=headers)

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "not_authenticated"
    async with committed_db.transaction() as session:
        assert await rows(session, UserProfile, user_id) == 0
        assert await rows(session, UserPreference, user_id) == 0
        email = await session.scalar(select(User.email).where(User.id == user_id))
        assert email is None if not with_orders else email != "late@example.com"


@pytest.mark.parametrize("with_orders", [False, True], ids=["deleted", "anonymised"])
async def test_delete_me_racing_a_password_change_is_401_and_removes_nothing(
    committed_db: Database,
    committed_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    with_orders: bool,
) -> None:
    """The password changes (on another device) after DELETE /me read its caller and while
    it checked the old password: the removal must be refused as any request of the old
    token is, not carried out on the strength of a password that no longer opens it."""
    async with committed_db.transaction() as session:
        user = await make_user(session)
        if with_orders:
            await make_order(session, user=user, courses=[await make_course(session)])
    user_id, headers = user.id, auth_headers(user)
    elsewhere = hash_password("changed-elsewhere-1")
    after_the_callers_read(
        monkeypatch, lambda: change_password_elsewhere(committed_db, user_id, elsewhere)
    )

    response = await committed_client.request(
        "DELETE", ME, json={"password": DEFAULT_PASSWORD}, headers=headers
    )

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "not_authenticated"
    async with committed_db.transaction() as session:
        email = await session.scalar(select(User.email).where(User.id == user_id))
    assert email == user.email  # neither deleted nor anonymised


@pytest.mark.parametrize("meanwhile", ["password-changed", "deleted", "anonymised"])
async def test_a_password_change_racing_another_change_or_a_removal_is_401_and_writes_nothing(
    committed_db: Database,
    committed_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
) -> None:
    """POST /me/password checks `current` against the hash its caller was read with, then
    stores the new one only if that hash is still there. Changed by another device, or the
    account removed, while `current` was checked: this request's token is stale (401, as
    any request of it after that), not a wrong password (403), and nothing is written."""
    async with committed_db.transaction() as session:
        user = await make_user(session)
        if meanwhile == "anonymised":
            await make_order(session, user=user, courses=[await make_course(session)])
    user_id, headers = user.id, auth_headers(user)
    elsewhere = hash_password("changed-elsewhere-1")
    after_the_callers_read(
        monkeypatch,
        lambda: (
            change_password_elsewhere(committed_db, user_id, elsewhere)
            if meanwhile == "password-changed"
            else remove_elsewhere(committed_db, user_id)
        ),
    )

    response = await committed_client.post(
        "/api/v1/me/password",
        json={"current": DEFAULT_PASSWORD, "new": "mine-after-all-1"},
        headers=headers,
    )

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "not_authenticated"
    async with committed_db.transaction() as session:
        stored = await session.scalar(select(User.password).where(User.id == user_id))
    if meanwhile == "password-changed":
        assert stored == elsewhere
    elif meanwhile == "deleted":
        assert stored is None
    else:
        assert stored is not None and not verify_password("mine-after-all-1", stored)[0]


async def test_two_changes_of_the_account_at_once_both_apply(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    """A form submitted twice, or an email and a username change sent together: each held
    the row FOR KEY SHARE, then both updated it (FOR UPDATE, a unique column): a deadlock,
    one of them a 409 transaction_conflict after a second. Now the second waits its turn."""
    async with committed_db.transaction() as session:
        user = await make_user(session)
    headers = auth_headers(user)

    for attempt in range(3):  # a race is not always run on the first try
        responses = await asyncio.gather(
            committed_client.patch(
                ME, json={"email": f"first-{attempt}@example.com"}, headers=headers
            ),
            committed_client.patch(ME, json={"username": f"second_{attempt}"}, headers=headers),
        )

        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        async with committed_db.transaction() as session:
            email, username = (
                await session.execute(select(User.email, User.username).where(User.id == user.id))
            ).one()
        assert (email, username) == (f"first-{attempt}@example.com", f"second_{attempt}")
