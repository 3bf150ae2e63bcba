"""A date range whose `from` is not before its `to` names `to` as the field at fault, on
both routes that read one (the admins' orders and the sales report), not the whole query
or a body the request never had."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import auth_headers, make_admin
from tests.payments.helpers import commit_setup


@pytest.mark.parametrize("url", ["/api/v1/admin/orders", "/api/v1/admin/reports/sales"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-26", "2026-11-25"),
        ("2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z"),  # `to` is exclusive: empty
    ],
)
async def test_a_backwards_range_names_to(
    client: httpx.AsyncClient, session: AsyncSession, url: str, start: str, end: str
) -> None:
    admin = await make_admin(session)
    await commit_setup(session)

    response = await client.get(url, params={"from": start, "to": end}, headers=auth_headers(admin))

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("to", "value_error")]
    assert "`from` must be before `to`" in body["errors"][0]["message"]
