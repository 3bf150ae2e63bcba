"""Every domain's router, mounted under /api/v1 by `create_app`."""

from fastapi import APIRouter

api_router = APIRouter()
