"""The benchmark suite runs end to end and reports what it promises (no timing assertions:
a smoke run on a tiny fixture, about a second per operation)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import asyncpg
import pytest

from coursehub.bench.fixture import (
    SMOKE_SIZE,
    NotABenchDatabase,
    drop_fixture,
    prepare_fixture,
)
from coursehub.bench.harness import Samples, compare, percentile, summarise
from coursehub.bench.http import (
    LoadPlan,
    checkout_body,
    closed_loop_mean_ms,
    run_http,
    stalls_corrected,
    wrk_script,
)
from coursehub.bench.ops import OPERATIONS, OurOps
from coursehub.bench.suite import SuiteOptions, run_suite
from coursehub.core.database import Database, drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig
from tests.conftest import scratch_database_name

STATS_KEYS = {"count", "errors", "ops_per_s", "p50_ms", "p99_ms"}


async def database_exists(server: DatabaseConfig, name: str) -> bool:
    connection = await asyncpg.connect(**server.with_database("postgres").asyncpg_connect_kwargs())
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


def assert_stats(stats: dict[str, Any]) -> None:
    assert stats.keys() >= STATS_KEYS
    assert stats["errors"] == 0, stats.get("first_error")
    assert stats["count"] > 0
    assert stats["ops_per_s"] > 0
    assert 0 < stats["p50_ms"] <= stats["p99_ms"]


@pytest.fixture(scope="module")
def smoke_report(server: DatabaseConfig, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`coursehub bench --smoke --json FILE`, as a user runs it, on a scratch database."""
    json_file = tmp_path_factory.mktemp("bench") / "report.json"
    name = scratch_database_name("bench")
    # The server's maintenance database: the suite makes its own beside it.
    env = {**os.environ, "DATABASE_URL": server.with_database("postgres").to_url()}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coursehub",
            "bench",
            "--smoke",
            "--json",
            str(json_file),
            "--database",
            name,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return name, json.loads(json_file.read_text()), result.stdout


def test_every_operation_is_measured_against_the_floor_at_1_and_16(
    smoke_report: Any,
) -> None:
    _, report, _ = smoke_report
    measured = {(row["operation"], row["concurrency"]) for row in report["operations"]}
    assert measured == {(name, c) for name in OPERATIONS for c in (1, 16)}
    for row in report["operations"]:
        assert_stats(row["ours"])
        assert_stats(row["floor"])
        assert row["latency_ratio"] == pytest.approx(
            row["ours"]["p50_ms"] / row["floor"]["p50_ms"], rel=0.01
        )
        assert row["throughput_ratio"] == pytest.approx(
            row["ours"]["ops_per_s"] / row["floor"]["ops_per_s"], rel=0.01
        )
        assert isinstance(row["meets_target"], bool)


def test_the_report_names_the_machine_and_the_targets(smoke_report: Any) -> None:
    _, report, stdout = smoke_report
    assert report["machine"]["nproc"] == os.cpu_count()
    assert report["machine"]["postgresql"]
    assert report["targets"] == {
        "latency_ratio_max_at_c1": 1.3,
        "throughput_ratio_min_at_c16": 0.75,
        "coupon_ratio_min": 0.8,
    }
    # The same figures as a table on stdout.
    assert "Ours (store code) against the floor" in stdout
    for row in report["operations"]:
        assert row["operation"] in stdout


def test_checkout_contention_on_one_coupon_is_measured(smoke_report: Any) -> None:
    _, report, stdout = smoke_report
    contention = report["coupon_contention"]
    assert contention["concurrency"] == 16
    for side in ("ours", "ours_own", "ours_limited", "floor", "floor_locked"):
        assert_stats(contention[side]["coupon"])
        assert_stats(contention[side]["no_coupon"])
        assert contention[side]["ratio"] > 0
    assert isinstance(contention["meets_target"], bool)
    assert "ours, a coupon each" in stdout


def test_http_endpoints_are_loaded_without_errors(smoke_report: Any) -> None:
    _, report, _ = smoke_report
    http = report["http"]
    assert http["tool"] in ("wrk", "builtin")
    assert http["server"]["environment"] == "production"
    assert http["server"]["workers"] == os.cpu_count()
    assert [row["name"] for row in http["endpoints"]] == ["list", "detail", "checkout"]
    for row in http["endpoints"]:
        assert row["requests"] > 0
        assert row["errors"] == 0, row
        assert row["requests_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["mean_ms"] > 0
        assert row["closed_loop_mean_ms"] == pytest.approx(
            http["connections"] / row["requests_per_s"] * 1000, rel=0.01
        )
        assert isinstance(row["stalls_corrected"], bool)
        assert row["max_ms"] >= row["p99_ms"]


async def test_the_bench_database_is_dropped_afterwards(
    smoke_report: Any, server: DatabaseConfig
) -> None:
    name, _, _ = smoke_report
    assert not await database_exists(server, name)


def test_the_suite_refuses_to_use_the_configured_database(server: DatabaseConfig) -> None:
    with pytest.raises(ValueError, match="separate one"):
        run_suite(server, SuiteOptions(database_name=server.database))


async def test_a_database_the_suite_did_not_make_is_never_dropped(server: DatabaseConfig) -> None:
    config = server.with_database(scratch_database_name("notbench"))
    await ensure_database_exists(config)
    try:
        with pytest.raises(NotABenchDatabase, match="not made by coursehub bench"):
            await prepare_fixture(config, SMOKE_SIZE)
        await drop_fixture(config)
        assert await database_exists(server, config.database)
    finally:
        await drop_database(config)
    with pytest.raises(NotABenchDatabase, match="PostgreSQL's own"):
        await prepare_fixture(server.with_database("template1"), SMOKE_SIZE)


async def test_the_builtin_load_generator_serves_when_wrk_is_absent(
    server: DatabaseConfig,
) -> None:
    config = server.with_database(scratch_database_name("benchhttp"))
    fixture = await prepare_fixture(config, SMOKE_SIZE)
    try:
        http = run_http(fixture, seconds=1, warmup=1, prefer_wrk=False)
    finally:
        await drop_fixture(config)
    assert http["tool"] == "builtin"
    for row in http["endpoints"]:
        assert row["requests"] > 0
        assert row["errors"] == 0, row
        # Its own timings of one request after another cannot exceed the closed-loop bound.
        assert row["mean_ms"] <= row["closed_loop_mean_ms"] * 1.01, row


def test_means_beyond_the_closed_loop_bound_are_flagged_as_corrected() -> None:
    # 16 connections at 1,600 requests/s: 10 ms each on average, at the very most.
    assert closed_loop_mean_ms(16, 1600) == pytest.approx(10.0)
    assert not stalls_corrected(9.5, 10.0)
    assert not stalls_corrected(12.0, 10.0)  # the ramp at the ends of a run
    assert stalls_corrected(83.0, 10.0)  # as wrk reported, with stalls corrected for
    assert not stalls_corrected(5.0, closed_loop_mean_ms(16, 0))  # no requests: no bound


def test_checkout_requests_never_repeat_a_course_or_a_coupon_for_a_user() -> None:
    """A user can't buy a course twice nor use a coupon twice: request k's (user, courses,
    coupon) never collide, however many requests a run sends."""
    plan = LoadPlan(
        kind="checkout",
        host="127.0.0.1",
        port=1,
        connections=16,
        seconds=1,
        tokens=[f"t{n}" for n in range(7)],
        course_ids=[f"c{n}" for n in range(41)],
        coupon_code="BENCH10",
    )
    bought: dict[int, set[str]] = {}
    coupon_users: list[int] = []
    for k in range(7 * 20):
        user, body = checkout_body(plan, k)
        request = json.loads(body)
        courses = set(request["courseIds"])
        assert len(courses) == 2
        assert not courses & bought.get(user, set())
        bought.setdefault(user, set()).update(courses)
        if "couponCode" in request:
            coupon_users.append(user)
    assert sorted(coupon_users) == list(range(7))
    script = wrk_script(plan, threads=2)
    assert "function request()" in script and "function done(" in script


async def test_both_sides_are_measured_after_the_statistics_are_settled() -> None:
    """`settle` (the suite's ANALYZE) runs once, after both warm-ups and before any
    measured call, so neither side is measured on plans made for empty tables."""
    events: list[str] = []
    measuring = False

    def side(name: str) -> Any:
        async def op(index: int) -> None:
            events.append(f"{name}:{'measured' if measuring else 'warm-up'}")
            await asyncio.sleep(0.001)

        return op

    async def settle() -> None:
        nonlocal measuring
        events.append("settle")
        measuring = True

    await compare(
        side("ours"),
        side("floor"),
        concurrency=1,
        seconds=0.04,
        warmup=0.02,
        indexes=iter(range(10**6)),
        settle=settle,
    )
    assert events.count("settle") == 1
    settled = events.index("settle")
    assert {"ours:warm-up", "floor:warm-up"} == set(events[:settled])
    assert {"ours:measured", "floor:measured"} == set(events[settled + 1 :])


def test_percentiles_and_summary() -> None:
    values = [i / 1000 for i in range(1, 101)]
    assert percentile(values, 0.5) == 0.05
    assert percentile(values, 0.99) == 0.099
    assert percentile([], 0.5) == 0.0
    stats = summarise(Samples(latencies=values, elapsed=2.0, errors=1))
    assert stats.count == 100
    assert stats.ops_per_s == 50
    assert stats.p50_ms == pytest.approx(50)


async def test_fixture_matches_the_workload(server: DatabaseConfig) -> None:
    config = server.with_database(scratch_database_name("benchfix"))
    fixture = await prepare_fixture(config, SMOKE_SIZE)
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        row = await connection.fetchrow('SELECT * FROM "Course" WHERE slug = $1', "bench-120")
        counts = await connection.fetchrow(
            'SELECT count(*) AS total, count(*) FILTER (WHERE "isPublished") AS published,'
            ' count(*) FILTER (WHERE "isFeatured") AS featured FROM "Course"'
        )
        coupon = await connection.fetchrow('SELECT * FROM "Coupon" WHERE code = $1', "BENCH10")
        twins = await connection.fetch(
            'SELECT code, type::text, value, "maxDiscount", "maxUses" FROM "Coupon"'
            " WHERE code NOT IN ('BENCH10', 'BENCH10-LIMITED') ORDER BY code"
        )
        limited = await connection.fetchrow(
            'SELECT type::text, value, "maxDiscount", "maxUses" FROM "Coupon" WHERE code = $1',
            fixture.limited_coupon_code,
        )
        admin = await connection.fetchval(
            'SELECT role::text FROM "User" WHERE email = $1', "bench-admin@example.com"
        )
    finally:
        await connection.close()
        await drop_fixture(config)
    assert row["category"] == "cat-0" and row["level"] == "beginner"
    assert row["price"] == 199 + 20 * 100 and row["duration"] == 180
    assert row["features"] == ["video", "quizzes"]
    assert not row["isPublished"]  # 120 % 20 == 0
    assert counts["total"] == 200 and counts["published"] == 190 and counts["featured"] == 4
    assert len(fixture.course_slugs) == 190 and "bench-120" not in fixture.course_slugs
    assert coupon["type"] == "percentage" and coupon["value"] == 10
    assert coupon["maxDiscount"] == 500 and coupon["maxUses"] is None
    # Its 64 twins, for checkouts that each use a coupon of their own.
    assert sorted(fixture.own_coupon_codes) == [row["code"] for row in twins]
    assert len(twins) == 64 and len(set(fixture.own_coupon_codes)) == 64
    assert {tuple(row)[1:] for row in twins} == {("percentage", 10, 500, None)}
    # And one limited to a million uses, for checkouts that claim a use of one coupon.
    assert fixture.limited_coupon_code == "BENCH10-LIMITED"
    assert tuple(limited) == ("percentage", 10, 500, 1_000_000)
    assert admin == "admin"


async def test_the_two_sides_alternate_in_short_slices_of_equal_time() -> None:
    """First, second, second, first, repeated: neither side runs long alone, and both
    get `seconds` in all."""
    calls: list[str] = []

    def side(name: str) -> Any:
        async def op(index: int) -> None:
            calls.append(name)
            await asyncio.sleep(0.002)

        return op

    ours, floor = await compare(
        side("ours"),
        side("floor"),
        concurrency=1,
        seconds=0.4,
        warmup=0.0,
        slice_seconds=0.05,
        indexes=iter(range(10**6)),
    )
    stretches = [name for name, _ in itertools.groupby(calls)]
    # Four rounds of ours, floor, floor, ours: adjacent slices of one side run together.
    assert stretches == ["ours", "floor"] * 4 + ["ours"]
    assert ours.count == calls.count("ours")
    assert 0.8 < ours.count / floor.count < 1.25


async def test_checkouts_on_own_coupons_each_use_their_twin(server: DatabaseConfig) -> None:
    config = server.with_database(scratch_database_name("benchown"))
    fixture = await prepare_fixture(config, SMOKE_SIZE)
    database = Database(config, pool_size=2)
    try:
        ours = OurOps(database, fixture, secret="s" * 32, tag="own")
        for index in (0, 1, 65):
            await ours.checkout_own_coupon(index)
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
        try:
            used = await connection.fetch(
                'SELECT c.code, u.discount FROM "CouponUsage" u'
                ' JOIN "Coupon" c ON c.id = u."couponId" ORDER BY u."createdAt", c.code'
            )
        finally:
            await connection.close()
    finally:
        await database.dispose()
        await drop_fixture(config)
    # index mod 64: 0 → BENCH10-0, 1 → BENCH10-1, 65 → BENCH10-1 again (another buyer).
    assert sorted(row["code"] for row in used) == ["BENCH10-0", "BENCH10-1", "BENCH10-1"]
    assert all(row["discount"] > 0 for row in used)


async def test_checkouts_on_the_limited_coupon_claim_its_uses(server: DatabaseConfig) -> None:
    config = server.with_database(scratch_database_name("benchlim"))
    fixture = await prepare_fixture(config, SMOKE_SIZE)
    database = Database(config, pool_size=2)
    try:
        ours = OurOps(database, fixture, secret="s" * 32, tag="lim")
        for index in range(3):
            await ours.checkout_limited_coupon(index)
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
        try:
            used = await connection.fetch(
                'SELECT c.code, c."maxUses", u.discount FROM "CouponUsage" u'
                ' JOIN "Coupon" c ON c.id = u."couponId"'
            )
        finally:
            await connection.close()
    finally:
        await database.dispose()
        await drop_fixture(config)
    assert [(row["code"], row["maxUses"]) for row in used] == [("BENCH10-LIMITED", 1_000_000)] * 3
    assert all(row["discount"] > 0 for row in used)


def test_a_second_run_on_the_same_database_is_refused_and_touches_nothing(
    server: DatabaseConfig,
) -> None:
    """Two runs with one --database on one server: the second dropped the first's database
    mid-run (WITH (FORCE)), and the first's clean-up then dropped the second's. Now the
    second refuses at once while the first runs, and the first finishes unharmed."""
    name = scratch_database_name("benchbusy")
    options = SuiteOptions(
        seconds=0.2,
        warmup=0.05,
        concurrencies=(1,),
        operations=("catalog_page",),
        size=SMOKE_SIZE,
        coupon_contention=False,
        http=False,
        database_name=name,
    )
    measuring, go_on = threading.Event(), threading.Event()

    def pause_while_measuring(message: str) -> None:
        if "at concurrency" in message:  # its fixture is in place: it measures next
            measuring.set()
            go_on.wait(timeout=120)

    first: dict[str, Any] = {}

    def first_run() -> None:
        try:
            first["report"] = run_suite(server, options, progress=pause_while_measuring)
        except BaseException as exc:
            first["error"] = exc
            measuring.set()

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert measuring.wait(timeout=120)
        assert "error" not in first, first
        second_started = time.monotonic()
        with pytest.raises(RuntimeError, match="another coursehub bench run is using database"):
            run_suite(server, options)
        assert time.monotonic() - second_started < 10  # at once, not after a run of its own
        assert asyncio.run(database_exists(server, name))  # the first's, untouched
    finally:
        go_on.set()
        thread.join(timeout=120)
    assert "error" not in first, first
    [row] = first["report"]["operations"]
    assert_stats(row["ours"])
    assert_stats(row["floor"])
    assert not asyncio.run(database_exists(server, name))
    # The first run's lock went with it: a third run gets as far as its fixture (stopped
    # there by its first word of progress).
    with pytest.raises(StopRun):
        run_suite(server, options, progress=stop_run)


class StopRun(Exception):
    pass


def stop_run(message: str) -> None:
    raise StopRun(message)
