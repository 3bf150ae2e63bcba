"""The whole suite: fixture, ours against the floor, coupon contention, HTTP; one report.

The report is a plain dict (what `--json` writes); `coursehub.bench.report` renders it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import secrets
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import sqlalchemy

from coursehub.bench.fixture import (
    BENCH_PASSWORD_HASH,
    DEFAULT_DATABASE_NAME,
    Fixture,
    FixtureSize,
    drop_fixture,
    prepare_fixture,
)
from coursehub.bench.harness import Op, Stats, compare, run_indexes
from coursehub.bench.ops import OPERATIONS, OurOps
from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.locks import BENCH_RUN_LOCK_CLASS
from coursehub.db.migrations import require_direct_connection

FLOOR_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "floor.py"
POOL_SIZE = 16
# WORKLOAD's targets: latency at c=1 within 1.3× the floor's, throughput at c=16 at
# least 75% of the floor's, and checkout on one coupon at least 80% of checkout without.
LATENCY_TARGET = 1.3
THROUGHPUT_TARGET = 0.75
COUPON_TARGET = 0.8


@dataclass(frozen=True)
class SuiteOptions:
    seconds: float = 4.0  # per operation, concurrency and side (ours / floor)
    warmup: float = 0.5
    concurrencies: tuple[int, ...] = (1, 16)
    operations: tuple[str, ...] = OPERATIONS
    size: FixtureSize = field(default_factory=FixtureSize)
    coupon_contention: bool = True
    http: bool = True
    http_seconds: float = 8.0
    http_warmup: float = 1.0
    prefer_wrk: bool = True
    database_name: str = DEFAULT_DATABASE_NAME
    keep_database: bool = False


class BenchBusy(RuntimeError):
    """Another run holds the bench database's name on this server."""


TRY_RUN_LOCK = "SELECT pg_try_advisory_lock($1::integer, hashtext($2))"


@contextmanager
def exclusive_run(server: DatabaseConfig, database_name: str) -> Iterator[None]:
    """Hold the run lock of `database_name` on `server` for the block; BenchBusy at once,
    having touched nothing, if another run holds it.

    Without it, a second run with the same --database drops the first's database mid-run
    (WITH (FORCE)), and the first's clean-up then drops the second's. The lock is
    session-level, on the maintenance database `postgres` (advisory locks belong to one
    database; every server has this one and no run drops it), on a connection of its own
    that stays open for the run: a run that dies releases it with its connection. That
    connection lives on a thread with an event loop of its own, since the suite runs its
    parts in event loops one after another and an asyncpg connection belongs to the loop
    that opened it.

    Behind PgBouncer in transaction mode a session's lock would stay on whichever server
    connection took it, held for no run: refused, as the suite's migrations refuse it."""
    require_direct_connection(server)
    taken: Future[bool] = Future()
    release = threading.Event()

    async def hold() -> None:
        connection = await asyncpg.connect(
            **server.with_database("postgres").asyncpg_connect_kwargs()
        )
        try:
            got = bool(await connection.fetchval(TRY_RUN_LOCK, BENCH_RUN_LOCK_CLASS, database_name))
            taken.set_result(got)
            if got:
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await connection.close()  # the lock, if taken, with it

    def holder() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # reached the caller through `taken`, if before it
            if not taken.done():
                taken.set_exception(exc)

    thread = threading.Thread(target=holder, name="bench-run-lock", daemon=True)
    thread.start()
    try:
        if not taken.result():  # the connection's errors are raised here
            raise BenchBusy(
                f"another coursehub bench run is using database {database_name!r} on this "
                "server; wait for it to end, or give this run another --database"
            )
        yield
    finally:
        release.set()
        thread.join()


class FloorMissing(RuntimeError):
    """The floor is not on disk: the suite runs from a source checkout, not a wheel."""


def check_floor() -> None:
    if not FLOOR_PATH.is_file():
        raise FloorMissing(
            f"the benchmark floor ({FLOOR_PATH}) is not here: `coursehub bench` runs from a "
            "source checkout (an editable install, as scripts/bootstrap makes), not a wheel"
        )


def load_floor() -> ModuleType:
    """benchmarks/floor.py, loaded by path: it lives beside the package, not in it (the
    package ships no benchmark code)."""
    check_floor()
    spec = importlib.util.spec_from_file_location("coursehub_bench_floor", FLOOR_PATH)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the floor from {FLOOR_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _ratio(ours: float, floor: float) -> float | None:
    return round(ours / floor, 3) if floor > 0 else None


def operation_row(name: str, concurrency: int, ours: Stats, floor: Stats) -> dict[str, Any]:
    latency_ratio = _ratio(ours.p50_ms, floor.p50_ms)
    throughput_ratio = _ratio(ours.ops_per_s, floor.ops_per_s)
    row: dict[str, Any] = {
        "operation": name,
        "concurrency": concurrency,
        "ours": ours.as_dict(),
        "floor": floor.as_dict(),
        "latency_ratio": latency_ratio,
        "throughput_ratio": throughput_ratio,
    }
    if concurrency == 1:
        row["target"] = f"p50 ≤ {LATENCY_TARGET}× floor"
        row["meets_target"] = latency_ratio is not None and latency_ratio <= LATENCY_TARGET
    elif concurrency >= 16:
        row["target"] = f"ops/s ≥ {THROUGHPUT_TARGET:.0%} of floor"
        row["meets_target"] = throughput_ratio is not None and throughput_ratio >= THROUGHPUT_TARGET
    return row


async def machine_info(config: DatabaseConfig) -> dict[str, Any]:
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        server_version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "sqlalchemy": sqlalchemy.__version__,
        "asyncpg": asyncpg.__version__,
    }


def make_floor_ops(
    floor_module: ModuleType, pool: asyncpg.Pool, fixture: Fixture, *, tag: str
) -> Any:
    """The floor's operations (benchmarks/floor.py `FloorOps`) on `pool`, over `fixture`;
    `tag` keeps their e-mail addresses apart from any other run's."""
    return floor_module.FloorOps(
        pool,
        password_hash=BENCH_PASSWORD_HASH,
        categories=fixture.categories,
        course_ids=fixture.course_ids,
        course_slugs=fixture.course_slugs,
        coupon_code=fixture.coupon_code,
        tag=tag,
    )


async def _measure_in_process(
    fixture: Fixture, options: SuiteOptions, progress: Callable[[str], None]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    floor_module = load_floor()
    tag = secrets.token_hex(3)
    database = Database(fixture.config, pool_size=POOL_SIZE)
    pool = await floor_module.create_pool(fixture.config.asyncpg_connect_kwargs(), size=POOL_SIZE)
    try:
        ours = OurOps(database, fixture, secret=secrets.token_urlsafe(32), tag=tag)
        floor = make_floor_ops(floor_module, pool, fixture, tag=tag)
        # Open all of our pool's connections now, as the floor's pool does at creation.
        await asyncio.gather(*(_touch(database) for _ in range(POOL_SIZE)))

        async def settle() -> None:
            await refresh_statistics(fixture.config)

        indexes = run_indexes()
        rows = []
        for name in options.operations:
            for concurrency in options.concurrencies:
                progress(f"{name} at concurrency {concurrency}")
                ours_stats, floor_stats = await compare(
                    getattr(ours, name),
                    getattr(floor, name),
                    concurrency=concurrency,
                    seconds=options.seconds,
                    warmup=options.warmup,
                    indexes=indexes,
                    settle=settle,
                )
                rows.append(operation_row(name, concurrency, ours_stats, floor_stats))
        contention = None
        if options.coupon_contention:
            progress("checkout on one coupon against none, at concurrency 16")
            contention = await _coupon_contention(ours, floor, options, indexes, settle)
        return rows, contention
    finally:
        await pool.close()
        await database.dispose()


async def _touch(database: Database) -> None:
    async with database.transaction():
        await asyncio.sleep(0.05)  # hold it so the others must open their own


async def refresh_statistics(config: DatabaseConfig) -> None:
    """ANALYZE the bench database, as autovacuum's auto-analyze does in a running store.

    The suite's writes grow tables from empty within seconds, long before autovacuum
    looks (once a minute). A server process plans a foreign-key check once and keeps the
    plan; planned while a table was nearly empty it scans the table, and keeps scanning it
    as it grows (measured: ~4 scans of "Order" per checkout, 40% more server CPU). Which
    side's connections ran first would decide which side pays for it. ANALYZE after both
    warm-ups gives both sides' plans the same, current statistics (and invalidates the
    plans made before), as a store in production has them."""
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def _coupon_contention(
    ours: OurOps,
    floor: Any,
    options: SuiteOptions,
    indexes: Any,
    settle: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Checkouts on one coupon against checkouts without, at c=16: what sharing a coupon
    costs. Ours locks a coupon's row only when it has a use limit (BENCH10 has none),
    as the floor does; `floor_locked` takes WORKLOAD.md's "lock the coupon" literally and
    locks it always, which queues every checkout on the coupon behind the last.
    `ours_own` gives each checkout a coupon of its own (one of 64 alike): against it, the
    one-coupon figure shows what the sharing costs, apart from what a coupon costs.
    `ours_limited` uses one coupon with a use limit (a million), whose uses are claimed
    under a lock on its row: what the limit costs."""
    concurrency = max(options.concurrencies)
    result: dict[str, Any] = {"concurrency": concurrency, "target": f"≥ {COUPON_TARGET:.0%}"}
    sides: tuple[tuple[str, Op, Op], ...] = (
        ("ours", ours.checkout, ours.checkout_no_coupon),
        ("ours_own", ours.checkout_own_coupon, ours.checkout_no_coupon),
        ("ours_limited", ours.checkout_limited_coupon, ours.checkout_no_coupon),
        ("floor", floor.checkout, floor.checkout_no_coupon),
        ("floor_locked", floor.checkout_locking_coupon, floor.checkout_no_coupon),
    )
    for side, with_coupon, without in sides:
        coupon_stats, plain_stats = await compare(
            with_coupon,
            without,
            concurrency=concurrency,
            seconds=options.seconds,
            warmup=options.warmup,
            indexes=indexes,
            settle=settle,
        )
        ratio = _ratio(coupon_stats.ops_per_s, plain_stats.ops_per_s)
        result[side] = {
            "coupon": coupon_stats.as_dict(),
            "no_coupon": plain_stats.as_dict(),
            "ratio": ratio,
        }
    ours_ratio = result["ours"]["ratio"]
    result["meets_target"] = ours_ratio is not None and ours_ratio >= COUPON_TARGET
    return result


async def _machine_and_fixture(
    server: DatabaseConfig, options: SuiteOptions
) -> tuple[dict[str, Any], Fixture]:
    config = server.with_database(options.database_name)
    fixture = await prepare_fixture(config, options.size)
    # Asked of the bench database: the configured one may not exist yet.
    return await machine_info(config), fixture


def run_suite(
    server: DatabaseConfig,
    options: SuiteOptions,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run everything against a scratch database on `server`; the report."""
    if options.database_name == server.database:
        raise ValueError(
            f"the bench database {options.database_name!r} is the configured database; "
            "the suite drops its database, so it must be a separate one"
        )
    check_floor()  # before a fixture is made for nothing
    started = time.monotonic()
    runner = _event_loop_runner()
    with exclusive_run(server, options.database_name):
        progress(f"preparing the fixture in database {options.database_name!r}")
        machine, fixture = runner(_machine_and_fixture(server, options))
        try:
            prepared = time.monotonic()
            rows, contention = runner(_measure_in_process(fixture, options, progress))
            http = None
            if options.http:
                from coursehub.bench.http import run_http

                http = run_http(
                    fixture,
                    seconds=options.http_seconds,
                    warmup=options.http_warmup,
                    connections=POOL_SIZE,
                    prefer_wrk=options.prefer_wrk,
                    progress=progress,
                )
        finally:
            if not options.keep_database:
                runner(drop_fixture(fixture.config))
    return {
        "machine": machine,
        "options": {
            **{k: v for k, v in asdict(options).items() if k != "size"},
            "fixture": asdict(options.size),
            "pool_size": POOL_SIZE,
        },
        "fixture_seconds": round(prepared - started, 2),
        "total_seconds": round(time.monotonic() - started, 1),
        "targets": {
            "latency_ratio_max_at_c1": LATENCY_TARGET,
            "throughput_ratio_min_at_c16": THROUGHPUT_TARGET,
            "coupon_ratio_min": COUPON_TARGET,
        },
        "operations": rows,
        "coupon_contention": contention,
        "http": http,
    }


def _event_loop_runner() -> Callable[[Any], Any]:
    """uvloop when installed (as uvicorn, and so the production server, uses it), for
    ours and the floor alike."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
