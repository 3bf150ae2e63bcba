"""POST /auth/register, /auth/login, /auth/refresh and /me/password."""

from __future__ import annotations

import asyncio
import time
import unicodedata
from datetime import timedelta
from typing import Any

import bcrypt
import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import create_app
from coursehub.auth.service import TokenPolicy, issue_tokens
from coursehub.core import security
from coursehub.core.database import Database
from coursehub.core.errors import ConfigurationError
from coursehub.core.settings import Settings
from coursehub.models import Role, User
from tests.conftest import TEST_SECRET
from tests.core.test_read_connection import checked_out
from tests.factories import DEFAULT_PASSWORD, access_token, auth_headers, bearer, make_user

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
PASSWORD = "/api/v1/me/password"
ME = "/api/v1/me"


async def sign_in(client: httpx.AsyncClient, login: str, password: str) -> dict[str, Any]:
    response = await client.post(LOGIN, json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- sign-up ---------------------------------------------------------------------------


async def test_sign_up_holds_no_connection_while_it_hashes(
    committed_client: httpx.AsyncClient, committed_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 takes ~100 ms: a sign-up must not hold one of the pool's few connections
    (and an open transaction) for that long. The account is written afterwards."""
    held: list[int] = []

    async def observed_hash(password: str) -> str:
        held.append(checked_out(committed_db))
        return await security.hash_password_off_loop(password)

    monkeypatch.setattr("coursehub.users.service.hash_password_off_loop", observed_hash)
    before = checked_out(committed_db)
    body = {"email": "pool@example.com", "username": "pool", "password": "long enough pw"}
    response = await committed_client.post(REGISTER, json=body)
    assert response.status_code == 201, response.text
    assert held == [before]
    taken = await committed_client.post(REGISTER, json={**body, "username": "other"})
    assert taken.status_code == 409 and taken.json()["code"] == "email_taken"


async def test_register_answers_the_user_lower_cased_and_never_the_hash(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        REGISTER,
        json={"email": " Ada@Example.COM ", "username": "Ada_Lovelace", "password": "s3cret-pass"},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["username"] == "ada_lovelace"
    assert body["role"] == "user"
    assert "password" not in body and "s3cret" not in response.text
    stored = await session.get(User, body["id"])
    assert stored is not None and stored.password.startswith("$argon2id$")
    assert security.verify_password("s3cret-pass", stored.password)[0]


@pytest.mark.parametrize(
    ("email", "username", "field", "code"),
    [
        ("TAKEN@example.com", "fresh", "email", "email_taken"),
        ("fresh@example.com", "TakenName", "username", "username_taken"),
    ],
)
async def test_a_taken_email_or_username_in_any_case_is_409_naming_it(
    client: httpx.AsyncClient,
    session: AsyncSession,
    email: str,
    username: str,
    field: str,
    code: str,
) -> None:
    # A mixed-case row as the Node app may have left it.
    await make_user(session, email="Taken@Example.com", username="TakenName")
    await session.commit()

    response = await client.post(
        REGISTER, json={"email": email, "username": username, "password": "long-enough"}
    )

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == code
    assert [e["field"] for e in body["errors"]] == [field]
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "username": "okname", "password": "long-enough"}, "email"),
        ({"email": "a@example.com", "username": "ab", "password": "long-enough"}, "username"),
        ({"email": "a@example.com", "username": "x" * 31, "password": "long-enough"}, "username"),
        ({"email": "a@example.com", "username": "bad name", "password": "long-enough"}, "username"),
        ({"email": "a@example.com", "username": "okname", "password": "short"}, "password"),
        ({"email": "a@example.com", "username": "okname", "password": "x" * 129}, "password"),
        ({"email": "a@example.com", "username": "okname"}, "password"),
    ],
)
async def test_invalid_sign_up_is_422_per_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post(REGISTER, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert [e["field"] for e in response.json()["errors"]] == [field]


# --- sign-in ---------------------------------------------------------------------------


async def test_sign_in_with_email_or_username_in_any_case(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, email="lin@example.com", username="lin")
    await session.commit()

    for login in ("lin@example.com", "LIN@Example.com", "lin", "Lin"):
        tokens = await sign_in(client, login, DEFAULT_PASSWORD)
        assert tokens["tokenType"] == "bearer"
        assert tokens["expiresIn"] == 30 * 60
        me = await client.get(ME, headers=bearer(tokens["accessToken"]))
        assert me.status_code == 200 and me.json()["id"] == user.id


async def test_wrong_password_and_unknown_account_get_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_user(session, email="known@example.com", username="known")
    await session.commit()
    # Count the password checks: an unknown account must cost one too (against the dummy
    # hash), so both answers take the time of one argon2id verification.
    checks: list[str] = []
    real_verify = security.password_hash.verify

    def counting_verify(password: str, hashed: str) -> bool:
        checks.append(hashed)
        return real_verify(password, hashed)

    monkeypatch.setattr(security.password_hash, "verify", counting_verify)
    monkeypatch.setattr(
        security.password_hash,
        "verify_and_update",
        lambda password, hashed: (counting_verify(password, hashed), None),
    )

    wrong = await client.post(LOGIN, json={"login": "known", "password": "not-the-password"})
    unknown = await client.post(LOGIN, json={"login": "nobody", "password": "not-the-password"})

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"
    assert len(checks) == 2
    assert all(h.startswith("$argon2id$") for h in checks)


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
async def test_a_bcrypt_hash_from_node_verifies_and_becomes_argon2id(
    client: httpx.AsyncClient, session: AsyncSession, prefix: str
) -> None:
    legacy = bcrypt.hashpw(b"node-era-password", bcrypt.gensalt(rounds=4)).decode()
    user = await make_user(session, password_hash=prefix + legacy[4:])
    await session.commit()
    # A failed request rolls the shared session back, expiring `user`: keep plain values.
    user_id, username = user.id, user.username
    stored_hash = select(User.password).where(User.id == user_id)

    wrong = await client.post(LOGIN, json={"login": username, "password": "nope-nope"})
    assert wrong.status_code == 401
    assert (await session.scalar(stored_hash) or "").startswith(prefix)

    tokens = await sign_in(client, username, "node-era-password")

    stored = await session.scalar(stored_hash)
    assert stored is not None and stored.startswith("$argon2id$")
    assert security.verify_password("node-era-password", stored)[0]
    # The token was made for the new hash, so it works.
    assert (await client.get(ME, headers=bearer(tokens["accessToken"]))).status_code == 200
    await sign_in(client, username, "node-era-password")  # and again, now argon2id


async def test_a_node_password_of_72_bytes_or_more_signs_in_and_keeps_its_bcrypt_hash(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Node's bcrypt hashed only a password's first 72 bytes; the bcrypt package here
    refuses longer ones. Such an account must still sign in, with its whole password. And
    as in Node, with anything typed after its 72nd byte: so the password given cannot be
    told from the account's, and no argon2id hash is made of it, which would have let in
    only that typo from then on and refused the real password."""
    password = "ñ" * 50  # 100 bytes in UTF-8
    legacy = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    user = await make_user(session, password_hash=legacy)
    await session.commit()
    user_id, username = user.id, user.username

    await sign_in(client, username, password + "EXTRA")
    await sign_in(client, username, password)

    stored = await session.scalar(select(User.password).where(User.id == user_id))
    assert stored == legacy


async def test_a_wrong_password_for_a_node_account_takes_an_argon2id_checks_time(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A failed sign-in must not tell, by answering sooner, that the account exists: a
    Node bcrypt hash (cost 4 here, ~1 ms) is checked far quicker than the dummy argon2id
    hash a missing account is checked against."""
    legacy = bcrypt.hashpw(b"node-era-password", bcrypt.gensalt(rounds=4)).decode()
    user = await make_user(session, password_hash=legacy)
    await session.commit()
    username = user.username

    async def failed_sign_in(login: str) -> float:
        began = time.perf_counter()
        response = await client.post(LOGIN, json={"login": login, "password": "not-it-1"})
        assert response.status_code == 401
        return time.perf_counter() - began

    missing = min([await failed_sign_in(f"nobody{i}") for i in range(3)])
    known = await failed_sign_in(username)

    assert known >= missing / 2, (known, missing)


async def test_sign_in_finds_an_email_typed_in_decomposed_unicode(
    client: httpx.AsyncClient,
) -> None:
    """Sign-up stores an email composed (NFC); the same email typed decomposed (o and a
    combining diaeresis, as some keyboards send it) must sign in too."""
    email = unicodedata.normalize("NFD", "Zoë@example.com")
    body = {"email": email, "username": "zoe1", "password": "long-enough"}
    assert (await client.post(REGISTER, json=body)).status_code == 201

    await sign_in(client, email, "long-enough")


async def test_an_anonymised_or_unusable_password_never_signs_in(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, password_hash=security.UNUSABLE_PASSWORD)
    await session.commit()

    response = await client.post(LOGIN, json={"login": user.username, "password": "anything1"})

    assert response.status_code == 401


@pytest.mark.committing
async def test_sign_in_holds_no_connection_while_it_checks_the_password(
    committed_client: httpx.AsyncClient, committed_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password check takes ~100 ms of argon2id (longer queued behind others): a sign-in,
    right, wrong or for no account, must not hold one of the pool's few connections
    meanwhile (60 wrong sign-ins at once kept the catalogue waiting 5 s for one). A Node
    hash is still replaced afterwards."""
    legacy = bcrypt.hashpw(b"node-era-password", bcrypt.gensalt(rounds=4)).decode()
    async with committed_db.transaction() as setup:
        username = (await make_user(setup)).username
        node_user = await make_user(setup, password_hash=legacy)
    held: list[int] = []

    async def observed_check(password: str, hashed: str | None) -> tuple[bool, str | None]:
        held.append(checked_out(committed_db))
        return await security.verify_sign_in_password(password, hashed)

    monkeypatch.setattr("coursehub.auth.service.verify_sign_in_password", observed_check)
    before = checked_out(committed_db)

    async def answer(login: str, password: str) -> int:
        body = {"login": login, "password": password}
        return (await committed_client.post(LOGIN, json=body)).status_code

    assert await answer(username, DEFAULT_PASSWORD) == 200
    assert await answer(username, "wrong-password") == 401
    assert await answer("nobody-here@example.com", "wrong-password") == 401
    assert await answer(node_user.username, "node-era-password") == 200
    assert held == [before] * 4
    async with committed_db.transaction() as check:
        stored = await check.scalar(select(User.password).where(User.id == node_user.id))
    assert stored is not None and stored.startswith("$argon2id$")


async def test_a_password_change_or_removal_holds_no_connection_while_it_checks_it(
    committed_client: httpx.AsyncClient, committed_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /me/password and DELETE /me check the caller's password (~100 ms of argon2id)
    before they write: the caller is read apart, so no connection is held meanwhile."""
    async with committed_db.transaction() as setup:
        changing, removing = await make_user(setup), await make_user(setup)
    held: list[int] = []

    async def observed_check(password: str, hashed: str | None) -> tuple[bool, str | None]:
        held.append(checked_out(committed_db))
        return await security.verify_password_off_loop(password, hashed)

    monkeypatch.setattr("coursehub.users.service.verify_password_off_loop", observed_check)
    before = checked_out(committed_db)

    changed = await committed_client.post(
        PASSWORD,
        json={"current": DEFAULT_PASSWORD, "new": "a-new-password-1"},
        headers=auth_headers(changing),
    )
    removed = await committed_client.request(
        "DELETE", ME, json={"password": DEFAULT_PASSWORD}, headers=auth_headers(removing)
    )

    assert changed.status_code == 200, changed.text
    assert removed.status_code == 200, removed.text
    assert held == [before] * 2
    relogin = await committed_client.post(
        LOGIN, json={"login": changing.email, "password": "a-new-password-1"}
    )
    assert relogin.status_code == 200


# --- tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("exp", [1e20, 1e300])
async def test_a_signed_token_with_an_absurd_expiry_is_no_server_error(
    client: httpx.AsyncClient, session: AsyncSession, exp: float
) -> None:
    """Signed with our secret, with `exp` far beyond any date (once an OverflowError, a
    500): for an account that does not exist, the 401 any such token gets. For a real
    account's claims it is a token only the secret's holder could sign: good like any."""
    user = await make_user(session)
    await session.commit()
    tokens = await sign_in(client, user.username, DEFAULT_PASSWORD)

    def with_exp(token: str, **changes: Any) -> str:
        claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
        return jwt.encode({**claims, "exp": exp, **changes}, TEST_SECRET, algorithm="HS256")

    nobody = {"sub": "no-such-user"}
    me = await client.get(ME, headers=bearer(with_exp(tokens["accessToken"], **nobody)))
    assert me.status_code == 401
    refreshed = await client.post(
        REFRESH, json={"refreshToken": with_exp(tokens["refreshToken"], **nobody)}
    )
    assert refreshed.status_code == 401
    assert refreshed.json()["code"] == "invalid_refresh_token"
    own = await client.get(ME, headers=bearer(with_exp(tokens["accessToken"])))
    assert own.status_code == 200


async def test_refresh_trades_a_refresh_token_for_a_new_pair(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    tokens = await sign_in(client, user.username, DEFAULT_PASSWORD)

    response = await client.post(REFRESH, json={"refreshToken": tokens["refreshToken"]})

    assert response.status_code == 200, response.text
    fresh = response.json()
    assert (await client.get(ME, headers=bearer(fresh["accessToken"]))).status_code == 200
    # Each kind of token only works as itself.
    as_refresh = await client.post(REFRESH, json={"refreshToken": tokens["accessToken"]})
    assert as_refresh.status_code == 401 and as_refresh.json()["code"] == "invalid_refresh_token"
    as_access = await client.get(ME, headers=bearer(tokens["refreshToken"]))
    assert as_access.status_code == 401


async def test_refresh_rejects_forged_and_garbage_tokens(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    forged = security.create_token(
        secret="someone-elses-secret-" + "y" * 32,
        user_id=user.id,
        password_hashed=user.password,
        type="refresh",
        lifetime=timedelta(days=1),
    )
    for token in (forged, "garbage", "a.b.c"):
        response = await client.post(REFRESH, json={"refreshToken": token})
        assert response.status_code == 401, token
        assert response.json()["code"] == "invalid_refresh_token"


async def test_access_token_lifetime_comes_from_settings(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    short = settings.model_copy(update={"access_token_minutes": 5, "refresh_token_days": 2})

    pair = issue_tokens(user, TokenPolicy.from_settings(short))

    access = jwt.decode(pair.access_token, TEST_SECRET, algorithms=["HS256"])
    refresh = jwt.decode(pair.refresh_token, TEST_SECRET, algorithms=["HS256"])
    assert access["exp"] - access["iat"] == 5 * 60
    assert refresh["exp"] - refresh["iat"] == 2 * 86400
    assert (pair.expires_in, pair.refresh_expires_in) == (300, 2 * 86400)


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ConfigurationError, match="COURSEHUB_SECRET_KEY"):
        create_app(Settings(_env_file=None, environment="production"))


async def test_a_role_change_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    headers = auth_headers(user)
    assert (await client.get("/api/v1/admin/users", headers=headers)).status_code == 403

    user.role = Role.admin
    await session.commit()

    assert (await client.get("/api/v1/admin/users", headers=headers)).status_code == 200


# --- password change -------------------------------------------------------------------


async def test_changing_the_password_invalidates_every_earlier_token(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    username = user.username
    old = await sign_in(client, username, DEFAULT_PASSWORD)
    other_device = access_token(user)

    response = await client.post(
        PASSWORD,
        json={"current": DEFAULT_PASSWORD, "new": "a-brand-new-password"},
        headers=bearer(old["accessToken"]),
    )

    assert response.status_code == 200, response.text
    fresh = response.json()
    assert (await client.get(ME, headers=bearer(old["accessToken"]))).status_code == 401
    assert (await client.get(ME, headers=bearer(other_device))).status_code == 401
    stale_refresh = await client.post(REFRESH, json={"refreshToken": old["refreshToken"]})
    assert stale_refresh.status_code == 401
    assert (await client.get(ME, headers=bearer(fresh["accessToken"]))).status_code == 200
    old_password = await client.post(LOGIN, json={"login": username, "password": DEFAULT_PASSWORD})
    assert old_password.status_code == 401
    await sign_in(client, username, "a-brand-new-password")


async def test_a_wrong_current_password_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    before, user_id, headers = user.password, user.id, auth_headers(user)

    response = await client.post(
        PASSWORD,
        json={"current": "not-my-password", "new": "a-brand-new-password"},
        headers=headers,
    )

    assert response.status_code == 403
    assert response.json()["code"] == "wrong_password"
    assert response.json()["errors"][0]["field"] == "current"
    assert await session.scalar(select(User.password).where(User.id == user_id)) == before
    assert (await client.get(ME, headers=headers)).status_code == 200


async def test_a_too_short_new_password_is_422(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()

    response = await client.post(
        PASSWORD, json={"current": DEFAULT_PASSWORD, "new": "short"}, headers=auth_headers(user)
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "new"


async def test_simultaneous_sign_ups_for_one_name_give_one_account_and_409s(
    committed_client: httpx.AsyncClient,
) -> None:
    """The taken-check and the insert race; the unique index decides, and the losers get
    the same 409 as a sequential sign-up would — never a 500."""
    bodies = [
        {"email": f"racer{i}@example.com", "username": "Racer", "password": "long-enough"}
        for i in range(8)
    ]

    responses = await asyncio.gather(*(committed_client.post(REGISTER, json=b) for b in bodies))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]
    assert all(r.json()["code"] == "username_taken" for r in responses if r.status_code == 409)
