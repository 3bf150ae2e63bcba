"""Money: half-up to the paisa, and zero never signed."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.money import to_paise
from tests.factories import auth_headers, make_admin


@pytest.mark.parametrize(
    ("amount", "paise"),
    [
        ("10.005", "10.01"),
        ("10.004", "10.00"),
        ("-10.005", "-10.01"),
        ("0", "0.00"),
        # Decimal keeps a zero's sign; "-0.00" would read as a negative amount.
        ("-0", "0.00"),
        ("-0.004", "0.00"),
        ("-0E+5", "0.00"),
    ],
)
def test_to_paise_rounds_half_up_and_never_signs_zero(amount: str, paise: str) -> None:
    assert str(to_paise(Decimal(amount))) == paise


async def test_a_price_of_minus_zero_is_shown_as_stored(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await session.commit()
    headers = auth_headers(admin)
    body = {"title": "Free", "duration": 60, "price": "-0", "category": "misc", "level": "beginner"}

    created = await client.post("/api/v1/admin/courses", json=body, headers=headers)
    course_id = created.json()["id"]
    patched = await client.patch(
        f"/api/v1/admin/courses/{course_id}", json={"price": "-0.00"}, headers=headers
    )
    stored = await client.get(f"/api/v1/admin/courses/{course_id}", headers=headers)

    assert created.status_code == 201, created.text
    assert patched.status_code == 200, patched.text
    assert created.json()["price"] == patched.json()["price"] == stored.json()["price"] == "0.00"
