"""The FastAPI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from coursehub import __version__
from coursehub.auth.throttle import SignInLimits, SignInThrottle
from coursehub.core.body_limit import RequestBodyLimit
from coursehub.core.database import Database, resolve_database
from coursehub.core.dependencies import DatabaseDep
from coursehub.core.errors import ConfigurationError
from coursehub.core.heap import startup_objects_frozen
from coursehub.core.log_writer import logs_written_in_background
from coursehub.core.problems import document_problem_responses, install_problem_handlers
from coursehub.core.settings import Settings, get_settings
from coursehub.orders.expiry import expire_orders_periodically
from coursehub.routes import api_router

API_PREFIX = "/api/v1"


def check_production_settings(settings: Settings) -> None:
    if settings.environment == "production" and (problems := settings.production_problems()):
        raise ConfigurationError("refusing to start in production: " + "; ".join(problems))


@asynccontextmanager
async def run_order_expiry(database: Database, settings: Settings) -> AsyncIterator[None]:
    """Expire stale pending orders in the background while the app runs (unless turned off)."""
    if not settings.order_expiry_interval_seconds:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(
        expire_orders_periodically(
            database,
            ttl=timedelta(minutes=settings.pending_order_ttl_minutes),
            interval_seconds=settings.order_expiry_interval_seconds,
            stop=stop,
        ),
        name="coursehub-order-expiry",
    )
    try:
        yield
    finally:
        stop.set()
        await task


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the app. Tests pass their own `database`; otherwise one is opened at start-up."""
    settings = settings or get_settings()
    check_production_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = database is None
        db = database or Database(resolve_database(settings).config)
        app.state.database = db
        # uvicorn has set its handlers up by now; from here on a slow log sink cannot
        # stall the requests (core/log_writer.py).
        with logs_written_in_background():
            async with run_order_expiry(db, settings):
                try:
                    # Last: everything start-up made is frozen (core/heap.py).
                    with startup_objects_frozen():
                        yield
                finally:
                    if owned:
                        await db.dispose()

    app = FastAPI(
        title="CourseHub",
        version=__version__,
        summary="The backend of an online-course store.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.signin_throttle = SignInThrottle(
        settings.rate_limit_storage,
        SignInLimits.parse(
            per_account_and_address=settings.signin_limit_per_account_and_address,
            per_account=settings.signin_limit_per_account,
            per_address=settings.signin_limit_per_address,
        ),
    )
    if database is not None:
        app.state.database = database
    install_problem_handlers(app)
    app.add_middleware(RequestBodyLimit, max_bytes=settings.max_request_body_bytes)
    document_problem_responses(app)

    @app.get("/healthz", tags=["health"], responses={503: {"description": "database down"}})
    async def healthz(database: DatabaseDep) -> JSONResponse:
        """200 when the database answers, 503 when it does not."""
        if await database.ping():
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    app.include_router(api_router, prefix=API_PREFIX)
    return app
