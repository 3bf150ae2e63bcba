"""Signing in to accounts carried over from the Node app: a bcrypt hash replaced by
sign-ins racing each other, and emails (or usernames) that differ only in case, which the
Node app let two accounts have (migration 0005)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import bcrypt
import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core import security
from coursehub.core.database import Database
from coursehub.core.models import utcnow
from coursehub.models import User
from tests.factories import bearer, make_user
from tests.queries import waiting_for_locks

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/me"
NODE_PASSWORD = "node-era-password"
SIGN_INS = 4


async def node_account(database: Database) -> User:
    """A committed account with a Node bcrypt hash (cost 4: quick)."""
    legacy = bcrypt.hashpw(NODE_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with database.transaction() as session:
        return await make_user(session, password_hash=legacy)


async def sign_ins_meeting_a_new_hash(
    database: Database, client: httpx.AsyncClient, user: User, new_hash: str
) -> list[httpx.Response]:
    """SIGN_INS sign-ins with the Node password, all of which read the bcrypt hash and then
    find it replaced, uncommitted, by `new_hash` when they store their argon2id one: they
    queue on the row's lock, and see `new_hash` once it is committed. (Deterministic: left
    to themselves, the first to commit its rehash beats the others most of the time.)"""
    async with database.transaction() as holder:
        await holder.execute(
            update(User).where(User.id == user.id).values(password=new_hash, updated_at=utcnow())
        )
        body = {"login": user.username, "password": NODE_PASSWORD}
        requests = [asyncio.create_task(client.post(LOGIN, json=body)) for _ in range(SIGN_INS)]
        await waiting_for_locks(database, SIGN_INS, what="sign-ins storing their argon2id hash")
    return await asyncio.gather(*requests)


async def stored_hash(database: Database, user_id: str) -> str | None:
    async with database.transaction() as session:
        return await session.scalar(select(User.password).where(User.id == user_id))


@pytest.mark.committing
async def test_sign_ins_racing_to_rehash_a_node_password_all_succeed(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    """Each finds the hash replaced (by another sign-in's argon2id hash of the same
    password), checks the password against that, and signs in with it."""
    user = await node_account(committed_db)
    rehashed = security.hash_password(NODE_PASSWORD)

    responses = await sign_ins_meeting_a_new_hash(committed_db, committed_client, user, rehashed)

    assert [r.status_code for r in responses] == [200] * SIGN_INS, [r.text for r in responses]
    assert await stored_hash(committed_db, user.id) == rehashed
    for response in responses:  # made for the hash stored, so they work
        me = await committed_client.get(ME, headers=bearer(response.json()["accessToken"]))
        assert me.status_code == 200 and me.json()["id"] == user.id


@pytest.mark.committing
async def test_a_password_changed_while_signing_in_refuses_the_old_one(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    user = await node_account(committed_db)
    changed = security.hash_password("a-brand-new-password")

    responses = await sign_ins_meeting_a_new_hash(committed_db, committed_client, user, changed)

    assert [r.status_code for r in responses] == [401] * SIGN_INS, [r.text for r in responses]
    assert all(r.json()["code"] == "invalid_credentials" for r in responses)
    assert await stored_hash(committed_db, user.id) == changed


# --- emails differing only in case ------------------------------------------------------


async def twin_accounts(session: AsyncSession) -> tuple[User, User]:
    """Two Node accounts whose emails and usernames differ only in case, each with its own
    password; the upper-case one is the older."""
    # Inserted second, so a scan in the table's order would meet the lower-case one first.
    lower = await make_user(
        session, email="dup@example.com", username="twin", password="lower-password"
    )
    upper = await make_user(
        session, email="DUP@example.com", username="Twin", password="upper-password"
    )
    upper.created_at = utcnow() - timedelta(days=400)
    await session.flush()
    await session.commit()
    return upper, lower


async def signed_in_as(client: httpx.AsyncClient, login: str, password: str) -> str | None:
    """The id of the account signed in to, or None if refused."""
    response = await client.post(LOGIN, json={"login": login, "password": password})
    if response.status_code != 200:
        assert response.json()["code"] == "invalid_credentials", response.text
        return None
    me = await client.get(ME, headers=bearer(response.json()["accessToken"]))
    user_id: str = me.json()["id"]
    return user_id


async def test_accounts_differing_only_in_case_each_sign_in_as_stored(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    upper, lower = await twin_accounts(session)
    upper_id, lower_id = upper.id, lower.id

    assert await signed_in_as(client, "DUP@example.com", "upper-password") == upper_id
    assert await signed_in_as(client, "dup@example.com", "lower-password") == lower_id
    assert await signed_in_as(client, "Twin", "upper-password") == upper_id
    assert await signed_in_as(client, "twin", "lower-password") == lower_id
    # Exactly that account: the other's password does not open it.
    assert await signed_in_as(client, "DUP@example.com", "lower-password") is None
    assert await signed_in_as(client, "dup@example.com", "upper-password") is None


async def test_a_login_in_another_case_finds_the_oldest_of_such_accounts(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Matching neither exactly, a login names the oldest account (the Node app's first
    with that address; the newer one is the duplicate), whichever case it is stored in:
    here the upper-case one. Always the same one, so the newer account's password fails."""
    upper, _ = await twin_accounts(session)
    upper_id = upper.id

    for login in ("Dup@Example.com", "dUP@example.COM", "TWIN", "tWin"):
        assert await signed_in_as(client, login, "upper-password") == upper_id
        assert await signed_in_as(client, login, "lower-password") is None
