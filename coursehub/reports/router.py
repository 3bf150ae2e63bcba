"""Reports for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coursehub.auth.dependencies import AdminUser
from coursehub.core.dependencies import SessionDep
from coursehub.core.errors import Forbidden, Unauthorized
from coursehub.core.problems import responses
from coursehub.reports import service
from coursehub.reports.errors import InvalidReportWindow
from coursehub.reports.schemas import SalesReportQuery, SalesReportRead

router = APIRouter(tags=["reports"])


@router.get(
    "/admin/reports/sales",
    response_model=SalesReportRead,
    response_model_by_alias=True,
    responses=responses(InvalidReportWindow, Unauthorized, Forbidden),
)
async def sales_report(
    session: SessionDep, admin: AdminUser, query: Annotated[SalesReportQuery, Query()]
) -> SalesReportRead:
    """Orders placed in [`from`, `to`): counts by status, gross sales, discounts, revenue
    (completed orders), refunds, and the top courses by revenue. Defaults: the last 30 days."""
    return await service.sales_report(session, query)
