"""Rates and their storage as settings spell them ("10/15 minutes", "redis://…"), for the
`limits` library."""

from __future__ import annotations

import re

import limits

MAX_WINDOW_SECONDS = 7 * 24 * 3600  # longer ones overflow storage expiries, and help nobody
# limits reads a window of "0 minutes" as 1 minute; an explicit zero is a mistake.
_ZERO_WINDOW = re.compile(r"(?:/|\bper)\s*0+\s*[a-z]", re.IGNORECASE)


def parse_rate(value: str) -> limits.RateLimitItem:
    """One rate such as "10/15 minutes": at least 1 in a window of at least 1 unit.
    ValueError otherwise (several rules, "0/minute", "10/0 minutes", not a rate)."""
    if _ZERO_WINDOW.search(value):
        raise ValueError("the window must be at least 1 unit long")
    rules = limits.parse_many(value)
    if len(rules) != 1:
        raise ValueError("must be one rate, such as 10/15 minutes")
    rule = rules[0]
    if rule.amount < 1 or rule.multiples < 1:
        raise ValueError("must allow at least 1 in a window of at least 1 unit")
    if rule.get_expiry() > MAX_WINDOW_SECONDS:
        raise ValueError("the window must be at most 7 days")
    return rule


def storage_uri(configured: str) -> str:
    """The `limits` storage URI of a setting (`memory://`, `redis://…`), for its async
    implementations (`async+…`)."""
    return configured if configured.startswith("async+") else f"async+{configured}"
