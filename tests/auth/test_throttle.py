"""Sign-in throttling (auth/throttle.py): per account from one address, per account, per
address; counted before the password is checked, 429 with Retry-After beyond, cleared for
the account by a success; exact under concurrent guesses; shared between processes
through Redis; never hanging or refusing everyone when Redis fails, and never letting
sign-ins through uncounted when the in-memory counts are slow."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import create_app
from coursehub.auth.errors import TooManySignInAttempts
from coursehub.auth.throttle import (
    STORAGE_TIMEOUT_SECONDS,
    SignInLimits,
    SignInThrottle,
    address_key,
)
from coursehub.core.database import Database
from coursehub.core.errors import ConfigurationError
from coursehub.core.settings import Settings, get_settings
from coursehub.models import User
from tests.conftest import share_test_session
from tests.core.test_security import default_thread_pool_busy
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_user

LOGIN = "/api/v1/auth/login"
LOOSE = "1000/hour"
ClientFor = Callable[[str], httpx.AsyncClient]


def limited_app(settings: Settings, database: Database, **limits: str) -> FastAPI:
    update = {f"signin_limit_{name}": rate for name, rate in limits.items()}
    defaults = {
        "signin_limit_per_account_and_address": LOOSE,
        "signin_limit_per_account": LOOSE,
        "signin_limit_per_address": LOOSE,
    }
    return create_app(settings.model_copy(update={**defaults, **update}), database=database)


@pytest.fixture
async def throttled(
    session: AsyncSession, settings: Settings, database: Database
) -> AsyncIterator[Callable[..., ClientFor]]:
    """`throttled(per_account="3/15 minutes", …)`: one app with those limits (the others
    loose), and a function giving a client of it at a given address."""
    clients: list[httpx.AsyncClient] = []

    def make(**limits: str) -> ClientFor:
        app = limited_app(settings, database, **limits)
        share_test_session(app, session)

        def client_for(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(
                app=app, raise_app_exceptions=False, client=(address, 40000)
            )
            client = httpx.AsyncClient(transport=transport, base_url="http://test")
            clients.append(client)
            return client

        return client_for

    yield make
    for client in clients:
        await client.aclose()


async def sign_in(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"login": login, "password": password})


async def codes(attempts: list[Awaitable[httpx.Response]]) -> list[int]:
    return [(await attempt).status_code for attempt in attempts]


async def test_an_account_from_one_address_gets_its_guesses_then_429_even_when_right(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    email = (await make_user(session)).email
    other = (await make_user(session)).username
    await session.commit()  # kept when a failed request rolls the shared session back
    at = throttled(per_account_and_address="3/15 minutes")("10.0.0.1")

    guesses = await codes([sign_in(at, email, "wrong-guess") for _ in range(3)])
    blocked = await sign_in(at, email.upper(), DEFAULT_PASSWORD)  # any case: same account
    others = await sign_in(at, other, DEFAULT_PASSWORD)

    assert guesses == [401, 401, 401]
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "too_many_attempts"
    retry_after = int(blocked.headers["Retry-After"])
    assert 1 <= retry_after <= 15 * 60
    assert blocked.json()["retryAfter"] == retry_after
    assert others.status_code == 200  # another account is not affected


async def test_the_email_and_the_username_share_one_count(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    user = await make_user(session)
    email, username = user.email, user.username
    await session.commit()
    at = throttled(per_account_and_address="3/15 minutes")("10.0.0.1")

    tried = await codes(
        [sign_in(at, email, "x"), sign_in(at, username, "x"), sign_in(at, username.upper(), "x")]
    )

    assert tried == [401, 401, 401]
    assert (await sign_in(at, email, DEFAULT_PASSWORD)).status_code == 429
    assert (await sign_in(at, username, DEFAULT_PASSWORD)).status_code == 429


async def test_guesses_from_elsewhere_do_not_lock_the_customer_out_at_home(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    """Someone else's guesses exhaust their own address's count for the account, not the
    customer's; only the looser account-wide count is shared."""
    email = (await make_user(session)).email
    await session.commit()
    client_for = throttled(per_account_and_address="3/15 minutes", per_account="6/15 minutes")
    attacker, customer = client_for("203.0.113.66"), client_for("198.51.100.20")

    attacked = await codes([sign_in(attacker, email, "guess") for _ in range(4)])
    home = await sign_in(customer, email, DEFAULT_PASSWORD)

    assert attacked == [401, 401, 401, 429]
    assert home.status_code == 200


async def test_guesses_spread_over_addresses_meet_the_account_wide_limit(
    throttled: Callable[..., ClientFor],
) -> None:
    client_for = throttled(per_account="4/15 minutes")
    login = f"victim-{uuid.uuid4().hex}@example.com"

    spread = await codes([sign_in(client_for(f"10.9.0.{n}"), login, "x") for n in range(5)])

    assert spread == [401, 401, 401, 401, 429]


async def test_a_login_without_an_account_is_throttled_alike(
    throttled: Callable[..., ClientFor],
) -> None:
    """The answers must not tell which logins have accounts."""
    at = throttled(per_account_and_address="2/15 minutes")("10.0.0.1")
    nobody = f"nobody-{uuid.uuid4().hex}@example.com"

    assert await codes([sign_in(at, nobody, "guess") for _ in range(3)]) == [401, 401, 429]


async def test_a_success_clears_the_accounts_count(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    username = (await make_user(session)).username
    await session.commit()
    at = throttled(per_account_and_address="3/15 minutes")("10.0.0.1")

    before = await codes([sign_in(at, username, "wrong") for _ in range(2)])
    success = await sign_in(at, username, DEFAULT_PASSWORD)
    after = await codes([sign_in(at, username, "wrong") for _ in range(4)])

    assert before == [401, 401]
    assert success.status_code == 200
    assert after == [401, 401, 401, 429]  # three again, not one


async def test_one_address_cannot_walk_through_many_accounts(
    throttled: Callable[..., ClientFor],
) -> None:
    client_for = throttled(per_address="4/15 minutes")
    guesser, neighbour = client_for("203.0.113.9"), client_for("203.0.113.10")

    walked = await codes(
        [sign_in(guesser, f"user{n}-{uuid.uuid4().hex}@example.com", "x") for n in range(5)]
    )

    assert walked == [401, 401, 401, 401, 429]
    assert (await sign_in(neighbour, "someone@example.com", "x")).status_code == 401


async def test_attempts_refused_at_the_account_leave_the_address_count_alone(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    """A client retrying a stale password must not use up the count shared by everyone
    behind its address."""
    stale = (await make_user(session)).email
    colleague = (await make_user(session)).email
    await session.commit()
    office = throttled(per_account_and_address="2/15 minutes", per_address="4/15 minutes")
    retrying, other_desk = office("192.0.2.50"), office("192.0.2.50")

    retries = await codes([sign_in(retrying, stale, "old-password") for _ in range(8)])
    colleague_signs_in = await sign_in(other_desk, colleague, DEFAULT_PASSWORD)

    assert retries == [401, 401] + [429] * 6
    assert colleague_signs_in.status_code == 200  # the address had counted 2, not 8


async def test_guesses_at_the_current_password_count_as_sign_in_attempts(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    """A stolen access token must not allow unlimited guesses through POST /me/password;
    the counts are the account's, shared with sign-in."""
    user = await make_user(session)
    email, headers = user.email, auth_headers(user)
    await session.commit()
    at = throttled(per_account_and_address="2/15 minutes")("10.0.0.7")

    def change(current: str) -> Awaitable[httpx.Response]:
        body = {"current": current, "new": "a-brand-new-password"}
        return at.post("/api/v1/me/password", json=body, headers=headers)

    guesses = await codes([change("guess-1"), change("guess-2")])
    right_but_late = await change(DEFAULT_PASSWORD)
    sign_in_too = await sign_in(at, email, DEFAULT_PASSWORD)

    assert guesses == [403, 403]
    assert right_but_late.status_code == 429
    assert right_but_late.json()["code"] == "too_many_attempts"
    assert sign_in_too.status_code == 429


async def test_guesses_at_the_password_to_delete_the_account_count_too(
    throttled: Callable[..., ClientFor], session: AsyncSession
) -> None:
    user = await make_user(session)
    user_id, headers = user.id, auth_headers(user)
    await session.commit()
    at = throttled(per_account_and_address="2/15 minutes")("10.0.0.8")

    def delete(password: str) -> Awaitable[httpx.Response]:
        return at.request("DELETE", "/api/v1/me", json={"password": password}, headers=headers)

    guesses = await codes([delete("guess-1"), delete("guess-2")])
    refused = await delete(DEFAULT_PASSWORD)

    assert guesses == [403, 403]
    assert refused.status_code == 429
    assert await session.get(User, user_id) is not None  # not deleted


def test_ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_key("testclient") == "testclient"
    assert address_key(None) is None


@pytest.mark.committing
@pytest.mark.parametrize("key", ["account", "address"])
async def test_concurrent_guesses_get_exactly_the_limit(
    committed_db: Database, settings: Settings, key: str
) -> None:
    """Counted before the password is checked, atomically: 20 guesses at once against a
    limit of 5 (one account, or one address over 20 accounts) are 5 wrong-password answers
    and 15 refusals, never more checks. Real sessions, one per request, as served."""
    async with committed_db.transaction() as setup:
        email = (await make_user(setup)).email
    logins = [email] * 20 if key == "account" else [f"u{n}@example.com" for n in range(20)]
    rate = {"per_account_and_address" if key == "account" else "per_address": "5/15 minutes"}
    app = limited_app(settings, committed_db, **rate)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(sign_in(client, login, "wrong") for login in logins))

    assert sorted(r.status_code for r in responses) == [401] * 5 + [429] * 15


def redis_is_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


RULES = SignInLimits.parse(
    per_account_and_address="3/15 minutes", per_account=LOOSE, per_address=LOOSE
)


@pytest.mark.skipif(not redis_is_reachable(), reason="no Redis at 127.0.0.1:6379")
async def test_workers_share_the_count_through_redis() -> None:
    """Two throttles on one Redis (two worker processes, or hosts) count together."""
    first = SignInThrottle("redis://127.0.0.1:6379", RULES)
    second = SignInThrottle("redis://127.0.0.1:6379", RULES)
    account = f"login:shared-{uuid.uuid4().hex}"

    await first.admit(account=account, address="10.1.1.1")
    await second.admit(account=account, address="10.1.1.1")
    await first.admit(account=account, address="10.1.1.1")
    with pytest.raises(TooManySignInAttempts):
        await second.admit(account=account, address="10.1.1.1")
    await first.succeeded(account=account, address="10.1.1.1")
    await second.admit(account=account, address="10.1.1.1")  # cleared for both


async def test_a_storage_that_refuses_connections_lets_sign_in_through() -> None:
    throttle = SignInThrottle("redis://127.0.0.1:1", RULES)  # nothing listens there

    for _ in range(5):
        await throttle.admit(account="login:someone", address="10.2.2.2")
    await throttle.succeeded(account="login:someone", address="10.2.2.2")


async def test_a_storage_that_never_answers_does_not_hang_sign_in() -> None:
    """A Redis that accepts connections and then says nothing (stuck, or partitioned)."""
    silent_connections: list[asyncio.StreamWriter] = []

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_connections.append(writer)

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        throttle = SignInThrottle(f"redis://127.0.0.1:{port}", RULES)
        # A guard, not a speed test: without the storage timeout this would wait forever.
        async with asyncio.timeout(30):
            for _ in range(2):
                await throttle.admit(account="login:someone", address="10.3.3.3")
            await throttle.succeeded(account="login:someone", address="10.3.3.3")
    finally:
        for writer in silent_connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_after_a_storage_failure_the_storage_is_left_alone_for_a_while() -> None:
    """A storage that does not answer costs its timeout once, not on every sign-in: the
    calls after a failure do not reach it (its coroutine is never awaited)."""
    throttle = SignInThrottle("redis://127.0.0.1:1", RULES)  # a networked storage
    reached: list[str] = []

    async def stuck() -> bool:
        reached.append("stuck")
        await asyncio.sleep(3600)
        return True

    async def answers() -> bool:
        reached.append("answers")
        return True

    assert await throttle._storage(stuck()) is None  # times out
    assert await throttle._storage(answers()) is None  # skipped: not reached
    assert reached == ["stuck"]


async def test_the_memory_storage_is_waited_for_while_the_default_thread_pool_is_busy() -> None:
    """The in-memory counts cannot be down: a slow answer from them is waited for. `limits`
    expires old attempts in a pass that holds a key's lock while it waits for a thread of
    the event loop's default pool; with that pool busy (once, argon2id hashes of sign-ups
    with a taken email), a sign-in's count took longer than the storage timeout, and the
    throttle, taking the storage for down, let every sign-in through for 30 seconds."""
    throttle = SignInThrottle("memory://", RULES)  # 3 per account from one address
    for _ in range(3):
        await throttle.admit(account="login:victim", address="10.4.4.4")
    await asyncio.sleep(0.1)  # the expiry passes those began are over

    async with default_thread_pool_busy():
        # Another sign-in begins an expiry pass, which takes the lock of the first key (the
        # victim's) and waits for a thread.
        await throttle.admit(account="login:someone-else", address="10.5.5.5")
        await asyncio.sleep(0.05)
        guess = asyncio.create_task(throttle.admit(account="login:victim", address="10.4.4.4"))
        await asyncio.sleep(STORAGE_TIMEOUT_SECONDS + 0.5)
        assert not guess.done()  # still waiting for its count, not let through uncounted

    with pytest.raises(TooManySignInAttempts):
        await guess


async def test_an_error_from_the_memory_storage_is_raised_and_counting_goes_on() -> None:
    """An error from the in-memory counts is a bug: raised (a 500), not a reason to sign
    everyone in uncounted for a while."""
    throttle = SignInThrottle("memory://", RULES)

    async def broken() -> bool:
        raise RuntimeError("a bug in the counting")

    with pytest.raises(RuntimeError, match="a bug"):
        await throttle._storage(broken())
    for _ in range(3):
        await throttle.admit(account="login:someone", address="10.6.6.6")
    with pytest.raises(TooManySignInAttempts):
        await throttle.admit(account="login:someone", address="10.6.6.6")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COURSEHUB_SIGNIN_LIMIT_PER_ACCOUNT", "lots"),
        ("COURSEHUB_SIGNIN_LIMIT_PER_ADDRESS", "10 per fortnight"),
        ("COURSEHUB_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS", "0/minute"),
        ("COURSEHUB_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS", "10/0 minutes"),
        ("COURSEHUB_SIGNIN_LIMIT_PER_ACCOUNT", "10/15 minutes;1/second"),
        ("COURSEHUB_SIGNIN_LIMIT_PER_ADDRESS", "10/1000 years"),
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
