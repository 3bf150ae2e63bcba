"""Sign-in throttling: how many password guesses an account, and a client address, get.

Sign-in attempts are counted in a moving window (`limits`, a well-kept rate-limiting
library) under two keys:

- the account, as the login was typed (trimmed, lower case), so that a login with no
  account behind it is throttled exactly like one with an account and the answers tell
  nothing about which exist;
- the client's address, so that one address cannot walk through many accounts.

An account's attempt is counted before its password is checked, in one atomic step, so
guesses sent at once cannot slip past the limit between a check and a count; a successful
sign-in clears the account's count. An address counts its failed attempts only, so that
many customers behind one address (an office, a proxy left untrusted) are not refused for
signing in successfully. Over either limit the answer is 429 `too_many_attempts` with
Retry-After, and the password is not checked at all.

The counts live in the server process's memory unless COURSEHUB_RATE_LIMIT_STORAGE
names a Redis server (`redis://host:6379`, with the `redis` extra installed): in memory,
each of N worker processes counts on its own, so an account gets up to N × the limit.
If the storage fails (Redis down), sign-in goes on unthrottled, with a warning: locking
every customer out is worse than a while without the limit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import NoReturn

import limits
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from coursehub.auth.errors import TooManySignInAttempts

logger = logging.getLogger("coursehub.auth")


def storage_uri(configured: str) -> str:
    """The `limits` storage URI of a setting: `memory://` or `redis://…`, for its async
    implementations (`async+…`)."""
    return configured if configured.startswith("async+") else f"async+{configured}"


@dataclass(frozen=True)
class SignInLimits:
    per_account: limits.RateLimitItem
    per_address: limits.RateLimitItem

    @classmethod
    def parse(cls, *, per_account: str, per_address: str) -> SignInLimits:
        """From strings such as "10/15 minutes" (ValueError if not one)."""
        return cls(per_account=limits.parse(per_account), per_address=limits.parse(per_address))


class SignInThrottle:
    def __init__(self, storage: str, rules: SignInLimits) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri(storage)))
        self._rules = rules

    async def admit(self, *, login: str, address: str | None) -> None:
        """Let this attempt be checked, counting it against its account; or
        TooManySignInAttempts if the account or the address is over its limit."""
        try:
            if address and not await self._limiter.test(
                self._rules.per_address, "signin", "address", address
            ):
                await self._refuse(self._rules.per_address, "address", address)
            account = _account(login)
            if not await self._limiter.hit(self._rules.per_account, "signin", "account", account):
                await self._refuse(self._rules.per_account, "account", account)
        except TooManySignInAttempts:
            raise
        except Exception as exc:  # the storage, not the rule: see the module's docstring
            logger.warning("sign-in throttle storage failed (%s); not throttling", exc)

    async def failed(self, *, address: str | None) -> None:
        """The password was wrong: the address's count of failures goes up."""
        if not address:
            return
        try:
            await self._limiter.hit(self._rules.per_address, "signin", "address", address)
        except Exception as exc:
            logger.warning("sign-in throttle storage failed (%s); failure not counted", exc)

    async def succeeded(self, *, login: str) -> None:
        """The account's password was right: its count starts again."""
        try:
            await self._limiter.clear(self._rules.per_account, "signin", "account", _account(login))
        except Exception as exc:
            logger.warning("sign-in throttle storage failed (%s); count not cleared", exc)

    async def _refuse(self, rule: limits.RateLimitItem, kind: str, key: str) -> NoReturn:
        stats = await self._limiter.get_window_stats(rule, "signin", kind, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManySignInAttempts(
            f"too many sign-in attempts for this {kind}; try again in {retry_after} seconds",
            extra={"retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


def _account(login: str) -> str:
    return login.strip().lower()
