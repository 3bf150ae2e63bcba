"""A small HTTP/1.1 load generator, used by the HTTP part when wrk is not installed.

Run as a separate process (`python -m coursehub.bench.loadgen PLAN.json`) so the
load does not share an interpreter with the server or the suite. It keeps
`connections` keep-alive connections busy, each sending its next request as soon
as the previous answer is read, and prints one JSON line with what it measured.
It is slower than wrk (a Python client saturates a core sooner), so on a small
machine it understates the server; the report says which tool was used.

The plan (JSON) says what to send; request `k` of the run is chosen exactly as the
wrk script does it (see `coursehub.bench.http.request_for`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from coursehub.bench.harness import percentile
from coursehub.bench.http import LoadPlan, request_for


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one response: its status code and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    return status, body


async def run(plan: LoadPlan) -> dict[str, Any]:
    indexes = itertools.count(plan.offset)
    latencies: list[float] = []
    errors = 0
    first_error = ""
    clock = time.perf_counter
    deadline = clock() + plan.seconds

    async def connection() -> None:
        nonlocal errors, first_error
        reader, writer = await asyncio.open_connection(plan.host, plan.port)
        try:
            while clock() < deadline:
                method, path, headers, body = request_for(plan, next(indexes))
                lines = [f"{method} {path} HTTP/1.1", f"Host: {plan.host}:{plan.port}"]
                lines += [f"{name}: {value}" for name, value in headers.items()]
                payload = body.encode()
                if method == "POST":
                    lines.append(f"Content-Length: {len(payload)}")
                started = clock()
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
                status, answer = await read_response(reader)
                latencies.append(clock() - started)
                if status >= 400:
                    errors += 1
                    if not first_error:
                        first_error = f"{status} {answer[:300].decode(errors='replace')}"
        finally:
            writer.close()

    began = clock()
    await asyncio.gather(*(connection() for _ in range(plan.connections)))
    elapsed = clock() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "duration_s": elapsed,
        "mean_ms": sum(latencies) / len(latencies) * 1000 if latencies else 0.0,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        # Nearest rank, as the in-process figures (`harness.percentile`).
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "first_error": first_error,
        # Every index below this one was used (sent, answered or not).
        "next_offset": next(indexes),
    }


def main() -> None:
    plan = LoadPlan.from_json(json.loads(Path(sys.argv[1]).read_text()))
    try:
        import uvloop

        result = uvloop.run(run(plan))
    except ImportError:  # the default loop does too, only slower
        result = asyncio.run(run(plan))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
