"""A coupon that does not hold together names the field at fault, the same on create
(checked by the body's model) as on update (checked against the stored coupon)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import utcnow
from tests.factories import auth_headers, make_admin, make_coupon
from tests.payments.helpers import commit_setup

ADMIN_URL = "/api/v1/admin/coupons"


def coupon_body(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "code": "FIELDS",
        "type": "percentage",
        "value": "10",
        "startDate": (now - timedelta(days=1)).isoformat(),
        "endDate": (now + timedelta(days=10)).isoformat(),
        **overrides,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"value": "150"}, "value"),
        ({"endDate": "2000-01-01T00:00:00Z"}, "endDate"),
    ],
)
async def test_create_and_update_name_the_same_field(
    client: httpx.AsyncClient, session: AsyncSession, changes: dict[str, str], field: str
) -> None:
    admin = await make_admin(session)
    coupon = await make_coupon(session, code="STORED", value="10")
    await commit_setup(session)
    headers = auth_headers(admin)

    created = await client.post(ADMIN_URL, json=coupon_body(**changes), headers=headers)
    updated = await client.patch(f"{ADMIN_URL}/{coupon.id}", json=changes, headers=headers)

    assert created.status_code == updated.status_code == 422, (created.text, updated.text)
    assert [e["field"] for e in created.json()["errors"]] == [field]
    assert [e["field"] for e in updated.json()["errors"]] == [field]


async def test_an_end_equal_to_the_start_names_end_date(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await commit_setup(session)
    at = utcnow().isoformat()

    response = await client.post(
        ADMIN_URL, json=coupon_body(startDate=at, endDate=at), headers=auth_headers(admin)
    )

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "field": "endDate",
            "message": "Value error, must be after startDate",
            "code": "value_error",
        }
    ]
