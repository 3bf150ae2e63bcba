"""Running PostgreSQL's client tools (pg_dump, pg_restore, psql) for backup and restore:
their environment, their stderr, stopping them, and the signals that interrupt a command.

Interrupted (cancelled: the CLI cancels on SIGINT and SIGTERM,
`cancelled_by_signals`), both end their child processes and wait for them before
saying so (`Interrupted`): a backup removes its partial file; a restore stops psql
before it can run another statement — the COMMIT may already be queued in its input,
behind slow statements such as index builds — and then asks the server whether the
restore's transaction committed, so its message is never a guess.

Passwords go to the tools through the environment (PGPASSWORD), never argv,
where `ps` would show them. Every tool runs with asyncio subprocesses, so the
event loop keeps drawing progress while they work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import Progress, TaskID

from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import StoreError

CHUNK = 1 << 20
# Longest stderr line read whole (psql quotes a failing COPY row in its error's context).
LINE_LIMIT = 16 << 20
# How long psql (after SIGINT) and the restore's server process get to end before they are
# killed (psql) or terminated (the server process).
STOP_GRACE = 10.0
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")


class Interrupted(Exception):
    """A backup or restore stopped part-way (cancelled), once its child processes have
    ended and its partial file is gone. The message says what it left behind;
    `signal` is the signal that stopped it, when one did (`cancelled_by_signals`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.signal: signal.Signals | None = None


async def cancelled_by_signals(operation: Coroutine[Any, Any, T]) -> T:
    """Await `operation` with SIGINT and SIGTERM cancelling it; Interrupted, naming the
    signal, if one did.

    Without this, SIGTERM killed the process on the spot (an orphaned pg_dump, a
    `.partial` file left behind), and a second SIGINT raised KeyboardInterrupt in the
    middle of the clean-up. Only the first signal cancels: the clean-up (bounded by
    STOP_GRACE) then runs to its end whatever arrives after it."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if not received:
            received.append(signum)
            task.cancel()

    for signum in STOPPING_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await operation
    except Interrupted as exc:
        exc.signal = received[0] if received else None
        raise
    except (asyncio.CancelledError, StoreError) as exc:
        if not received:
            raise
        # Ctrl-C reaches the whole process group: a tool it stopped may have failed the
        # operation before the cancellation arrived. Its message still says what is left.
        interrupted = Interrupted(
            str(exc) if isinstance(exc, StoreError) else "stopped before it changed anything"
        )
        interrupted.signal = received[0]
        raise interrupted from exc
    finally:
        for signum in STOPPING_SIGNALS:
            loop.remove_signal_handler(signum)


async def to_the_end(awaitable: Awaitable[T]) -> T:
    """`awaitable` awaited to its end even if this task is cancelled meanwhile. For the
    clean-up on the way out of a cancellation or failure (which is re-raised afterwards):
    a child process left running could still commit a restore reported as stopped."""
    task = asyncio.ensure_future(awaitable)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise


async def end_process(
    process: asyncio.subprocess.Process | None,
    *readers: asyncio.Task[None] | None,
    first: signal.Signals | None = signal.SIGKILL,
) -> None:
    """Stop `process` if it still runs (`first`, unless it was signalled already; SIGKILL
    after STOP_GRACE), wait for it, then for the tasks reading its output (which end at
    its end)."""
    if process is not None and process.returncode is None:
        if first is not None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(first)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    await asyncio.gather(*(r for r in readers if r is not None), return_exceptions=True)


# --- running the tools ---------------------------------------------------------------


def tool_environment(config: DatabaseConfig) -> dict[str, str]:
    """The caller's environment without its own PG* settings (a stray PGSERVICE or
    PGPASSFILE must not redirect us), plus the target's libpq settings."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**inherited, **config.libpq_environment()}


def first_error(stderr_lines: list[str], fallback: str) -> str:
    """The most useful line of a tool's stderr: its first error, else its last line."""
    for line in stderr_lines:
        if "error:" in line or "ERROR:" in line or "FATAL:" in line or "fatal:" in line:
            return line.strip()
    meaningful = [line.strip() for line in stderr_lines if line.strip()]
    return meaningful[-1] if meaningful else fallback


async def read_lines(
    stream: asyncio.StreamReader, sink: list[str], on_line: Callable[[str], None]
) -> None:
    async for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        sink.append(line)
        on_line(line)


_TABLE_IN_VERBOSE = re.compile(r'(?:contents of|data for) table "?([^"]+?)"?$')


def describe_verbose_line(line: str, verb: str) -> str | None:
    """`pg_dump: dumping contents of table "public.Order"` → `dumping public.Order`."""
    match = _TABLE_IN_VERBOSE.search(line)
    return f"{verb} {match.group(1)}" if match else None


def showing_tables(progress: Progress, task: TaskID, verb: str) -> Callable[[str], None]:
    """A handler of a verbose pg_dump's or pg_restore's stderr lines that shows the table
    it is at as `task`'s description (`dumping public.Order`)."""

    def on_line(line: str) -> None:
        described = describe_verbose_line(line, verb)
        if described:
            progress.update(task, description=described)

    return on_line


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
