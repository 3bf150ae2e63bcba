"""Sign-in throttling: how many password guesses an account and a client address get.

Sign-in attempts are counted in moving windows (`limits`, a well-kept rate-limiting
library) under three keys, each counted atomically *before* the password is checked (so
guesses sent at once cannot slip past a limit between a check and a count), and the
password is not checked at all once one is over its limit (429 `too_many_attempts`, with
Retry-After):

- the account from this address (strict, 10 per 15 minutes by default): guessing one
  account's password from one place;
- the account from anywhere (looser, 100 per 15 minutes): the same guessing spread over
  many addresses. Being looser, it also bounds how easily someone else can lock a
  customer out: from one address they can only exhaust that address's own count;
- the address, over all accounts (200 per 15 minutes): one address walking through many
  accounts. It counts successful sign-ins too (an atomic count cannot be taken back), so
  keep it well above what an office behind one address needs, and make sure the server
  sees the clients' addresses, not its proxy's (README: FORWARDED_ALLOW_IPS).

"The account" is the account's id when the login (email or username, any case) names one,
so both spellings share one count; otherwise the login as typed, lower case, so that a
login without an account is throttled exactly like one with an account. A successful
sign-in clears its account's counts. IPv6 clients are counted by their /64 network (one
host usually has a whole /64), IPv4-mapped addresses as IPv4.

The counts live in the server process's memory unless COURSEHUB_RATE_LIMIT_STORAGE names
a Redis server (the `redis` extra): in memory, each of N worker processes counts on its
own. If Redis fails or does not answer within STORAGE_TIMEOUT_SECONDS (down, or
unreachable), sign-in goes on unthrottled for STORAGE_RETRY_SECONDS before the storage is
tried again, with a warning at most once a minute: locking every customer out, or making
every sign-in wait, is worse than a while without the limit. The memory storage is never
given up on that way: it cannot be down or unreachable, only slow while this process is
busy (its expiry pass waits for a thread of the event loop's default pool), and giving up
on it then would let a burst of requests switch the limit off. Its calls are awaited
however long they take, and an error from one is a bug, raised (a 500), not a reason to
stop counting.

What it does not do: someone guessing from many addresses can still hold an account at
its account-wide limit (a challenge, such as a CAPTCHA or an e-mailed link, would be the
next step); and since the account is counted by id, exhausting it under a username and
then trying an email shows whether the two belong to one account.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from coursehub.auth.errors import TooManySignInAttempts
from coursehub.core.rates import parse_rate, storage_uri

logger = logging.getLogger("coursehub.auth")
T = TypeVar("T")

STORAGE_TIMEOUT_SECONDS = 0.5
STORAGE_RETRY_SECONDS = 30
WARNING_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class SignInLimits:
    per_account_and_address: limits.RateLimitItem
    per_account: limits.RateLimitItem
    per_address: limits.RateLimitItem

    @classmethod
    def parse(
        cls, *, per_account_and_address: str, per_account: str, per_address: str
    ) -> SignInLimits:
        return cls(
            per_account_and_address=parse_rate(per_account_and_address),
            per_account=parse_rate(per_account),
            per_address=parse_rate(per_address),
        )


def account_key(*, user_id: str | None, login: str) -> str:
    """What an account's attempts are counted under (see the module's docstring)."""
    return f"id:{user_id}" if user_id is not None else f"login:{login.strip().lower()}"


def address_key(address: str | None) -> str | None:
    """IPv6 by its /64, IPv4-mapped IPv6 as IPv4; anything unparsable as it is."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class SignInThrottle:
    def __init__(self, storage: str, rules: SignInLimits) -> None:
        counts = storage_from_string(storage_uri(storage))
        self._limiter = MovingWindowRateLimiter(counts)
        # This process's memory: never timed out nor skipped (see `_storage`).
        self._in_process = isinstance(counts, MemoryStorage)
        self._rules = rules
        self._warned_at = -math.inf
        self._skip_until = -math.inf

    async def admit(self, *, account: str, address: str | None) -> None:
        """Count this attempt under each of its keys; TooManySignInAttempts (and nothing
        more counted) at the first key over its limit."""
        where = address_key(address)
        # The account's counts first: an attempt refused there does not use up the count its
        # address shares with everyone behind it (a client retrying a stale password).
        keys: list[tuple[limits.RateLimitItem, tuple[str, ...], str]] = []
        if where is not None:
            keys.append(
                (self._rules.per_account_and_address, ("account", account, where), "account")
            )
        keys.append((self._rules.per_account, ("account", account), "account"))
        if where is not None:
            keys.append((self._rules.per_address, ("address", where), "address"))
        for rule, identifiers, kind in keys:
            allowed = await self._storage(self._limiter.hit(rule, "signin", *identifiers))
            if allowed is False:
                await self._refuse(rule, identifiers, kind)

    async def succeeded(self, *, account: str, address: str | None) -> None:
        """The account's password was right: its counts start again."""
        where = address_key(address)
        if where is not None:
            await self._storage(
                self._limiter.clear(
                    self._rules.per_account_and_address, "signin", "account", account, where
                )
            )
        await self._storage(
            self._limiter.clear(self._rules.per_account, "signin", "account", account)
        )

    async def _refuse(
        self, rule: limits.RateLimitItem, identifiers: tuple[str, ...], kind: str
    ) -> NoReturn:
        stats = await self._storage(self._limiter.get_window_stats(rule, "signin", *identifiers))
        # Until the oldest attempt in the window leaves it; the whole window if unknown.
        reset_at = stats.reset_time if stats is not None else time.time() + rule.get_expiry()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise TooManySignInAttempts(
            f"too many sign-in attempts for this {kind}; try again in {retry_after} seconds",
            extra={"retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

    async def _storage(self, call: Coroutine[Any, Any, T]) -> T | None:
        """The storage's answer. From Redis: None if it failed or took too long (then
        unthrottled), and after a failure Redis is left alone for STORAGE_RETRY_SECONDS, so
        that a storage that does not answer does not add its timeout to every sign-in. From
        the memory storage: always its answer, however long it takes, and its errors
        raised (the module's docstring says why)."""
        if self._in_process:
            return await call
        if time.monotonic() < self._skip_until:
            call.close()
            return None
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                return await call
        except Exception as exc:  # the storage's own errors, whatever its client library
            now = time.monotonic()
            self._skip_until = now + STORAGE_RETRY_SECONDS
            if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
                self._warned_at = now
                logger.warning(
                    "sign-in throttle storage failed (%s); signing in unthrottled for %d s",
                    str(exc) or type(exc).__name__,
                    STORAGE_RETRY_SECONDS,
                )
            return None
