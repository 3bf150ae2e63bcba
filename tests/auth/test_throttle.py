"""Sign-in throttling (auth/throttle.py): per account and per address, counted before the
password is checked, 429 with Retry-After beyond, cleared for the account by a success;
exact under concurrent guesses; shared between processes through Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import create_app
from coursehub.auth.errors import TooManySignInAttempts
from coursehub.auth.throttle import SignInLimits, SignInThrottle
from coursehub.core.database import Database
from coursehub.core.errors import ConfigurationError
from coursehub.core.settings import Settings, get_settings
from tests.conftest import share_test_session
from tests.factories import DEFAULT_PASSWORD, make_user

LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def throttled(
    session: AsyncSession, settings: Settings, database: Database
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """A client on an app with the given sign-in limits (and addresses of our choosing)."""
    clients: list[httpx.AsyncClient] = []

    def make(
        *, per_account: str = "1000/hour", per_address: str = "1000/hour", address: str = "10.0.0.1"
    ) -> httpx.AsyncClient:
        limited = settings.model_copy(
            update={
                "signin_limit_per_account": per_account,
                "signin_limit_per_address": per_address,
            }
        )
        app = create_app(limited, database=database)
        share_test_session(app, session)
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=(address, 40000)
        )
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def sign_in(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"login": login, "password": password})


async def test_an_account_gets_its_limit_of_guesses_then_429_even_with_the_right_password(
    throttled: Callable[..., httpx.AsyncClient], session: AsyncSession
) -> None:
    email = (await make_user(session)).email
    other = (await make_user(session)).username
    await session.commit()  # kept when a failed request rolls the shared session back
    client = throttled(per_account="3/15 minutes")

    guesses = [(await sign_in(client, email, "wrong-guess")).status_code for _ in range(3)]
    blocked = await sign_in(client, email.upper(), DEFAULT_PASSWORD)  # any case: same account
    others = await sign_in(client, other, DEFAULT_PASSWORD)

    assert guesses == [401, 401, 401]
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "too_many_attempts"
    retry_after = int(blocked.headers["Retry-After"])
    assert 1 <= retry_after <= 15 * 60
    assert blocked.json()["retryAfter"] == retry_after
    assert others.status_code == 200  # another account is not affected


async def test_a_login_without_an_account_is_throttled_alike(
    throttled: Callable[..., httpx.AsyncClient],
) -> None:
    """The answers must not tell which logins have accounts."""
    client = throttled(per_account="2/15 minutes")
    nobody = f"nobody-{uuid.uuid4().hex}@example.com"

    codes = [(await sign_in(client, nobody, "guess")).status_code for _ in range(3)]

    assert codes == [401, 401, 429]


async def test_a_success_clears_the_accounts_count(
    throttled: Callable[..., httpx.AsyncClient], session: AsyncSession
) -> None:
    username = (await make_user(session)).username
    await session.commit()
    client = throttled(per_account="3/15 minutes")

    before = [(await sign_in(client, username, "wrong")).status_code for _ in range(2)]
    success = await sign_in(client, username, DEFAULT_PASSWORD)
    after = [(await sign_in(client, username, "wrong")).status_code for _ in range(4)]

    assert before == [401, 401]
    assert success.status_code == 200
    assert after == [401, 401, 401, 429]  # three again, not one


async def test_one_address_cannot_walk_through_many_accounts(
    throttled: Callable[..., httpx.AsyncClient],
) -> None:
    guesser = throttled(per_address="4/15 minutes", address="203.0.113.9")
    neighbour = throttled(per_address="4/15 minutes", address="203.0.113.10")

    codes = [
        (await sign_in(guesser, f"user{n}-{uuid.uuid4().hex}@example.com", "x")).status_code
        for n in range(5)
    ]

    assert codes == [401, 401, 401, 401, 429]
    assert (await sign_in(neighbour, "someone@example.com", "x")).status_code == 401


async def test_an_address_counts_only_its_failures(
    throttled: Callable[..., httpx.AsyncClient], session: AsyncSession
) -> None:
    """Many customers behind one address (an office, a proxy) all sign in."""
    usernames = [(await make_user(session)).username for _ in range(4)]
    await session.commit()
    office = throttled(per_address="2/15 minutes", address="198.51.100.7")

    signed_in = [(await sign_in(office, name, DEFAULT_PASSWORD)).status_code for name in usernames]
    wrong = [(await sign_in(office, name, "wrong")).status_code for name in usernames[:3]]

    assert signed_in == [200, 200, 200, 200]
    assert wrong == [401, 401, 429]


@pytest.mark.committing
async def test_concurrent_guesses_get_exactly_the_limit(
    committed_db: Database, settings: Settings
) -> None:
    """Counted before the password is checked, atomically: 20 guesses at once against a
    limit of 5 are 5 wrong-password answers and 15 refusals, never more checks. (Real
    sessions, one per request, as the server runs them.)"""
    async with committed_db.transaction() as setup:
        email = (await make_user(setup)).email
    limited = settings.model_copy(update={"signin_limit_per_account": "5/15 minutes"})
    app = create_app(limited, database=committed_db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(sign_in(client, email, "wrong") for _ in range(20)))

    codes = sorted(r.status_code for r in responses)
    assert codes == [401] * 5 + [429] * 15


def redis_is_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not redis_is_reachable(), reason="no Redis at 127.0.0.1:6379")
async def test_workers_share_the_count_through_redis() -> None:
    """Two throttles on one Redis (two worker processes, or hosts) count together."""
    rules = SignInLimits.parse(per_account="3/15 minutes", per_address="1000/hour")
    first = SignInThrottle("redis://127.0.0.1:6379", rules)
    second = SignInThrottle("redis://127.0.0.1:6379", rules)
    login = f"shared-{uuid.uuid4().hex}@example.com"

    await first.admit(login=login, address="10.1.1.1")
    await second.admit(login=login, address="10.1.1.2")
    await first.admit(login=login, address="10.1.1.3")
    with pytest.raises(TooManySignInAttempts):
        await second.admit(login=login, address="10.1.1.4")
    await first.succeeded(login=login)
    await second.admit(login=login, address="10.1.1.5")  # cleared for both


async def test_a_storage_that_fails_lets_sign_in_through() -> None:
    """Redis down must not lock every customer out: unthrottled, with a warning."""
    rules = SignInLimits.parse(per_account="1/hour", per_address="1/hour")
    throttle = SignInThrottle("redis://127.0.0.1:1", rules)  # nothing listens there

    for _ in range(3):
        await throttle.admit(login="someone@example.com", address="10.2.2.2")
    await throttle.succeeded(login="someone@example.com")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COURSEHUB_SIGNIN_LIMIT_PER_ACCOUNT", "lots"),
        ("COURSEHUB_SIGNIN_LIMIT_PER_ADDRESS", "10 per fortnight"),
        ("COURSEHUB_RATE_LIMIT_STORAGE", "memcached://127.0.0.1:11211"),
    ],
)
def test_a_bad_throttle_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=variable) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "\n" not in str(caught.value)
