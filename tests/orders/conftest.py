"""What every orders test starts from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coursehub.orders.checkout import CLAIM_HINTS


@pytest.fixture(autouse=True)
def fresh_claim_hints() -> Iterator[None]:
    """A process that has learnt nothing about claiming limited coupons (K, coupons near
    their limit), whatever ran before: which way a claim goes stays this test's own."""
    CLAIM_HINTS.forget()
    yield
    CLAIM_HINTS.forget()
