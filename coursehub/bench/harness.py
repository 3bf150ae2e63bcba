"""Running one operation at a given concurrency for a time budget, and summarising it.

An operation is `async def op(index) -> None`; `index` is unique across the whole
run (so each iteration can make its own e-mail address) and rotates the inputs.
`concurrency` tasks call it back to back until the budget is spent; each call's
latency is recorded. Ours and the floor run through exactly this code, in the
same process and event loop, so whatever the harness costs is common to both.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Op = Callable[[int], Awaitable[None]]


@dataclass
class Samples:
    """Latencies (seconds) of the calls that succeeded, and the wall time they took."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: float = 0.0  # this process's CPU time (user + system) over the runs
    errors: int = 0
    first_error: str | None = None

    def extend(self, other: Samples) -> None:
        self.latencies.extend(other.latencies)
        self.elapsed += other.elapsed
        self.cpu += other.cpu
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error


@dataclass(frozen=True)
class Stats:
    count: int
    errors: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    # The client process's CPU per operation: the Python side's cost (ORM, driver,
    # event loop), which wall-clock figures on a busy machine blur.
    cpu_us_per_op: float = 0.0
    first_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "count": self.count,
            "errors": self.errors,
            "ops_per_s": round(self.ops_per_s, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "cpu_us_per_op": round(self.cpu_us_per_op, 1),
        }
        if self.first_error:
            data["first_error"] = self.first_error
        return data


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


def summarise(samples: Samples) -> Stats:
    latencies = sorted(samples.latencies)
    return Stats(
        count=len(latencies),
        errors=samples.errors,
        ops_per_s=len(latencies) / samples.elapsed if samples.elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        cpu_us_per_op=samples.cpu / len(latencies) * 1e6 if latencies else 0.0,
        first_error=samples.first_error,
    )


async def run_for(op: Op, *, concurrency: int, seconds: float, indexes: Iterator[int]) -> Samples:
    """Call `op` from `concurrency` tasks, back to back, for `seconds`."""
    samples = Samples()
    clock = time.perf_counter
    deadline = clock() + seconds

    async def worker() -> None:
        while clock() < deadline:
            index = next(indexes)
            started = clock()
            try:
                await op(index)
            except Exception as exc:  # counted and reported; one failure must not stop a run
                samples.errors += 1
                if samples.first_error is None:
                    samples.first_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                continue
            samples.latencies.append(clock() - started)

    began, cpu_began = clock(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.elapsed = clock() - began
    samples.cpu = time.process_time() - cpu_began
    return samples


# How long each alternating slice of a comparison runs (see `compare`).
SLICE_SECONDS = 0.5


async def compare(
    first: Op,
    second: Op,
    *,
    concurrency: int,
    seconds: float,
    indexes: Iterator[int],
    warmup: float,
    settle: Callable[[], Awaitable[None]] | None = None,
    slice_seconds: float = SLICE_SECONDS,
) -> tuple[Stats, Stats]:
    """Measure two operations (ours and the floor, say) in short alternating slices —
    first, second, second, first, repeated — so a machine that slows down or speeds up
    during the run weighs on both alike: a growing table as much as a burst of someone
    else's disk writes, which on a shared two-core machine can last a second or more and,
    with two long halves each, fell on one side only. Each gets `seconds` in all, in
    slices of about `slice_seconds`, after a warm-up of its own; `settle` runs after both
    warm-ups, before the first slice is measured (the suite refreshes the planner's
    statistics there)."""
    for op in (first, second):
        await run_for(op, concurrency=concurrency, seconds=warmup, indexes=indexes)
    if settle is not None:
        await settle()
    first_samples, second_samples = Samples(), Samples()
    rounds = max(1, round(seconds / (2 * slice_seconds)))
    piece = seconds / (2 * rounds)
    order = ((first_samples, first), (second_samples, second))
    for _ in range(rounds):
        for target, op in (*order, *reversed(order)):
            target.extend(
                await run_for(op, concurrency=concurrency, seconds=piece, indexes=indexes)
            )
    return summarise(first_samples), summarise(second_samples)


def run_indexes() -> Iterator[int]:
    return itertools.count()
