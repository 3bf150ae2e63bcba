"""Every domain's router, mounted under /api/v1 by `create_app`."""

from fastapi import APIRouter

from coursehub.auth.router import router as auth_router
from coursehub.catalog.router import router as catalog_router
from coursehub.coupons.router import router as coupons_router
from coursehub.enrollments.router import router as enrollments_router
from coursehub.orders.admin_router import router as orders_admin_router
from coursehub.orders.router import router as orders_router
from coursehub.payments.router import router as payments_router
from coursehub.reports.router import router as reports_router
from coursehub.users.router import router as users_router

api_router = APIRouter()
for domain_router in (
    auth_router,
    users_router,
    catalog_router,
    coupons_router,
    orders_router,
    orders_admin_router,
    payments_router,
    enrollments_router,
    reports_router,
):
    api_router.include_router(domain_router)
