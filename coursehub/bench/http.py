"""The HTTP part: `coursehub serve` as README's "Running in production" runs it, loaded
from a separate process on loopback.

The server runs in a subprocess against the bench database with
`COURSEHUB_ENVIRONMENT=production`, fresh random secrets and one worker per core;
each worker's pool gets `ceil(16 / workers)` connections (the workers share one
DATABASE_URL, so one limit), so the whole server may open `workers × ceil(16 / workers)`:
the same 16 the in-process part uses when the worker count divides 16, a few more
otherwise (18 on 3 cores). The load comes from wrk when it is installed
(`apt-get install wrk`), else from `coursehub.bench.loadgen`, a small asyncio
client started as its own process. Both pick request `k` with `request_for`.

Checkout: a user can't buy a course twice (nor have it in two pending orders), so
request `k` goes to user `k mod U` (U users made by the fixture, each with a token
signed with the server's secret) for the course pair `(u + k div U) mod pairs`:
one user never gets the same pair twice until the fixture's pairs run out, which
takes far longer than a run.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from coursehub.bench.fixture import BENCH_PASSWORD_HASH, Fixture
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.security import create_token

API = "/api/v1"
CHECKOUT_PATH = f"{API}/orders"
SERVER_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoadPlan:
    """What one load run sends: GETs rotating over `paths`, or checkouts."""

    kind: Literal["get", "checkout"]
    host: str
    port: int
    connections: int
    seconds: float
    offset: int = 0  # the first request index, so runs never reuse a (user, pair)
    paths: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    course_ids: list[str] = field(default_factory=list)
    coupon_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadPlan:
        return cls(**data)


def checkout_body(plan: LoadPlan, k: int) -> tuple[int, str]:
    """(user number, JSON body) of checkout request `k`."""
    users = len(plan.tokens)
    pairs = len(plan.course_ids) // 2
    user, round_ = k % users, k // users
    pair = (user + round_) % pairs
    body: dict[str, Any] = {
        "courseIds": [plan.course_ids[2 * pair], plan.course_ids[2 * pair + 1]],
        "paymentMethod": "card",
    }
    # A coupon is good once per user: only each user's first checkout carries it.
    if plan.coupon_code and round_ == 0:
        body["couponCode"] = plan.coupon_code
    return user, json.dumps(body, separators=(",", ":"))


def request_for(plan: LoadPlan, k: int) -> tuple[str, str, dict[str, str], str]:
    """Request `k` of a run: method, path, headers, body."""
    if plan.kind == "get":
        return "GET", plan.paths[k % len(plan.paths)], {}, ""
    user, body = checkout_body(plan, k)
    headers = {"Authorization": f"Bearer {plan.tokens[user]}", "Content-Type": "application/json"}
    return "POST", CHECKOUT_PATH, headers, body


def _lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def wrk_script(plan: LoadPlan, *, threads: int) -> str:
    """A wrk Lua script choosing request `k` as `request_for` does.

    wrk gives each thread its own Lua state; `setup` numbers the threads, and thread
    `t` sends requests `offset + t`, `offset + t + threads`, … `done` prints one JSON
    line with the totals (latencies are in microseconds in wrk)."""
    common = f"""
local threads = {threads}
local offset = 0
sent = 0
local numbered = 0
local all_threads = {{}}
first_error = nil
function setup(thread)
  thread:set("tid", numbered)
  numbered = numbered + 1
  table.insert(all_threads, thread)
end
function init(args)
  offset = tonumber(args[1] or "0")
end
local function next_index()
  local k = offset + tid + threads * sent
  sent = sent + 1
  return k
end
function response(status, headers, body)
  if status >= 400 and first_error == nil then
    first_error = status .. " " .. string.sub(body or "", 1, 300)
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  local seen = ""
  local most = 0
  for _, thread in ipairs(all_threads) do
    most = math.max(most, thread:get("sent"))
    local found = thread:get("first_error")
    if found ~= nil and seen == "" then seen = string.gsub(found, '[%c"\\\\]', " ") end
  end
  io.write(string.format(
    '{{"requests":%d,"errors":%d,"duration_s":%.6f,"mean_ms":%.3f,"max_ms":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"next_offset":%d,"first_error":"%s"}}\\n',
    summary.requests, e.status + e.connect + e.read + e.write + e.timeout,
    summary.duration / 1e6, latency.mean / 1000, latency.max / 1000,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, offset + threads * most,
    seen))
end
"""
    if plan.kind == "get":
        return (
            f"local paths = {_lua_list(plan.paths)}\n"
            + common
            + """
function request()
  local k = next_index()
  return wrk.format("GET", paths[(k % #paths) + 1])
end
"""
        )
    coupon = f',"couponCode":{json.dumps(plan.coupon_code)}' if plan.coupon_code else ""
    return (
        f"local tokens = {_lua_list(plan.tokens)}\n"
        f"local courses = {_lua_list(plan.course_ids)}\n"
        + common
        + f"""
local pairs_count = math.floor(#courses / 2)
function request()
  local k = next_index()
  local user = k % #tokens
  local round = math.floor(k / #tokens)
  local pair = (user + round) % pairs_count
  local coupon = ""
  if round == 0 then coupon = '{coupon}' end
  local body = '{{"courseIds":["' .. courses[2 * pair + 1] .. '","' .. courses[2 * pair + 2]
    .. '"],"paymentMethod":"card"' .. coupon .. '}}'
  local headers = {{}}
  headers["Authorization"] = "Bearer " .. tokens[user + 1]
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", "{CHECKOUT_PATH}", headers, body)
end
"""
    )


def _last_json_line(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"the load generator printed no result:\n{output[-2000:]}")


# How far above the closed-loop bound a reported mean latency may be (the bound is exact
# but for the ramp at the ends of a run) before it says that stalls were corrected for.
CLOSED_LOOP_TOLERANCE = 1.25


def closed_loop_mean_ms(connections: int, requests_per_s: float) -> float:
    """The mean latency that `connections` connections sending one request after another
    must have had to reach `requests_per_s` (Little's law: in flight = rate × time in
    flight, and at most `connections` are in flight), in ms; a measured mean is at most
    this."""
    return connections / requests_per_s * 1000 if requests_per_s > 0 else 0.0


def stalls_corrected(mean_ms: float, bound_ms: float) -> bool:
    """Whether the tool's latencies include samples it added for stalls, as wrk's do: it
    corrects for coordinated omission (while a connection waits on a slow response it
    sends nothing, so the requests a steady client would have sent meanwhile go
    unmeasured) by adding, for every response slower than twice the mean interval, the
    samples those requests would have had. Only then can its mean exceed the closed-loop
    bound. A handful of stalls of a second (0.05% of requests) lifts such a p99 from
    ~25 ms to over a second: it describes clients that do not wait for each other, not
    the requests measured; the max is the longest real one."""
    return bound_ms > 0 and mean_ms > bound_ms * CLOSED_LOOP_TOLERANCE


def run_load(plan: LoadPlan, *, tool: Literal["wrk", "builtin"], workdir: Path) -> dict[str, Any]:
    """Run one load in a separate process; its totals."""
    if tool == "wrk":
        threads = max(1, min(plan.connections, os.cpu_count() or 1))
        script = workdir / f"{plan.kind}-{plan.offset}.lua"
        script.write_text(wrk_script(plan, threads=threads))
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{plan.connections}",
            f"-d{max(1, round(plan.seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://{plan.host}:{plan.port}",
            "--",
            str(plan.offset),
        ]
    else:
        plan_file = workdir / f"{plan.kind}-{plan.offset}.json"
        plan_file.write_text(json.dumps(plan.to_json()))
        command = [sys.executable, "-m", "coursehub.bench.loadgen", str(plan_file)]
    completed = subprocess.run(  # noqa: S603 (our own command line)
        command, capture_output=True, text=True, timeout=plan.seconds + 120, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}"
        )
    result = _last_json_line(completed.stdout)
    result["requests_per_s"] = result["requests"] / result["duration_s"]
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} at start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {url} within {timeout:.0f} s")


@dataclass(frozen=True)
class ServerSettings:
    workers: int
    connection_limit: int
    environment: str = "production"


@contextmanager
def running_server(
    config: DatabaseConfig, settings: ServerSettings, *, secret: str, log: Path
) -> Iterator[tuple[str, int]]:
    """`coursehub serve` in a subprocess on a free loopback port; stopped on exit."""
    port = free_port()
    database_url = replace(config, pool_size=settings.connection_limit).to_url()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "COURSEHUB_ENVIRONMENT": settings.environment,
        "COURSEHUB_SECRET_KEY": secret,
        "COURSEHUB_PAYMENT_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    }
    command = [
        sys.executable,
        "-m",
        "coursehub",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(settings.workers),
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 (our own command line)
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process, SERVER_START_TIMEOUT)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def load_tool(prefer_wrk: bool = True) -> Literal["wrk", "builtin"]:
    return "wrk" if prefer_wrk and shutil.which("wrk") else "builtin"


def run_http(
    fixture: Fixture,
    *,
    seconds: float,
    warmup: float,
    connections: int = 16,
    prefer_wrk: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Serve the bench database and load three endpoints; requests/s, p50 and p99 of each."""
    workers = os.cpu_count() or 1
    settings = ServerSettings(workers=workers, connection_limit=math.ceil(connections / workers))
    tool = load_tool(prefer_wrk)
    secret = secrets.token_urlsafe(48)
    tokens = [
        create_token(
            secret=secret,
            user_id=user_id,
            password_hashed=BENCH_PASSWORD_HASH,
            type="access",
            lifetime=timedelta(hours=6),
        )
        for user_id in fixture.http_user_ids
    ]
    endpoints: list[tuple[str, str, LoadPlan]] = []
    with tempfile.TemporaryDirectory(prefix="coursehub-bench-") as tmp:
        workdir = Path(tmp)
        with running_server(
            fixture.config, settings, secret=secret, log=workdir / "server.log"
        ) as (host, port):
            base = LoadPlan(kind="get", host=host, port=port, connections=connections, seconds=0)
            endpoints = [
                (
                    "GET /courses?category=…",
                    "list",
                    replace(
                        base, paths=[f"{API}/courses?category={c}" for c in fixture.categories]
                    ),
                ),
                (
                    "GET /courses/{slug}",
                    "detail",
                    replace(base, paths=[f"{API}/courses/{s}" for s in fixture.course_slugs]),
                ),
                (
                    "POST /orders (checkout)",
                    "checkout",
                    replace(
                        base,
                        kind="checkout",
                        tokens=tokens,
                        course_ids=fixture.course_ids,
                        coupon_code=fixture.coupon_code,
                    ),
                ),
            ]
            results = []
            for label, name, plan in endpoints:
                progress(f"HTTP {label}")
                offset = 0
                for budget in (warmup, seconds):  # the last run is the one reported
                    result = run_load(
                        replace(plan, seconds=budget, offset=offset), tool=tool, workdir=workdir
                    )
                    # Never reuse a request index: a checkout would buy a pair again.
                    offset = result["next_offset"]
                bound = closed_loop_mean_ms(connections, result["requests_per_s"])
                results.append(
                    {
                        "name": name,
                        "endpoint": label,
                        "requests": result["requests"],
                        "errors": result["errors"],
                        "requests_per_s": round(result["requests_per_s"], 1),
                        "mean_ms": round(result["mean_ms"], 3),
                        "p50_ms": round(result["p50_ms"], 3),
                        "p99_ms": round(result["p99_ms"], 3),
                        "max_ms": round(result["max_ms"], 3),
                        "closed_loop_mean_ms": round(bound, 3),
                        "stalls_corrected": stalls_corrected(result["mean_ms"], bound),
                    }
                )
                if result.get("first_error"):
                    results[-1]["first_error"] = result["first_error"]
    return {
        "tool": tool,
        "connections": connections,
        "server": asdict(settings),
        "endpoints": results,
    }
