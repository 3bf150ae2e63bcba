from fastapi import APIRouter

router = APIRouter(tags=["orders (admin)"])
