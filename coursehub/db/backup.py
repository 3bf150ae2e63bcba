"""Backup over pg_dump.

Backup: the store's schema and nothing else (`pg_dump --schema`): not the
database's other schemas, extensions or large objects. pg_dump takes one snapshot
(a repeatable-read transaction) for the whole dump, so a backup taken while the
store is writing is consistent: every order with all its items or not at all. It
writes to `.<name>.partial` beside the target and renames it into place only when
pg_dump succeeded, so a failed or interrupted backup never leaves a file that
looks like a good one.

Interrupted (`tool_processes.cancelled_by_signals`), it ends pg_dump and waits for it, and
removes its partial file, before saying so (`Interrupted`).
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coursehub.core.dburl import DatabaseConfig, quoted_identifier
from coursehub.core.errors import StoreError
from coursehub.db.pgtools import Tool, find_tools
from coursehub.db.progress import bytes_progress
from coursehub.db.tool_processes import (
    CHUNK,
    LINE_LIMIT,
    Interrupted,
    end_process,
    file_size,
    first_error,
    read_lines,
    showing_tables,
    to_the_end,
    tool_environment,
)


class BackupFailed(StoreError):
    status = 500
    code = "backup_failed"
    title = "Backup failed"


# --- backup ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    plain: bool
    pg_dump: Tool


def default_backup_path(*, plain: bool, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return Path(f"coursehub-{stamp}.{'sql' if plain else 'dump'}")


async def backup_database(
    config: DatabaseConfig,
    file: Path | None,
    *,
    plain: bool,
    embedded: bool = False,
    show_progress: bool = True,
) -> BackupResult:
    """Dump the store's schema to `file` (custom format, or plain SQL with `plain`).

    Cancelled, it stops pg_dump, removes the partial file and raises Interrupted."""
    path = file or default_backup_path(plain=plain)
    try:
        # Python 3.11's is_dir() raises, rather than answer, in a directory that cannot be
        # entered.
        if path.is_dir():
            path = path / default_backup_path(plain=plain)
        directory_exists = path.parent.is_dir()
    except OSError as exc:
        raise BackupFailed(f"cannot write {path}: {exc.strerror}") from None
    if not directory_exists:
        raise BackupFailed(f"cannot write {path}: the directory {path.parent} does not exist")
    _refuse_what_is_no_regular_file(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        _create_private(partial)
        tools = await find_tools(config, ("pg_dump",), prefer_wheel=embedded)
        pg_dump = tools["pg_dump"]
        returncode, stderr = await _run_pg_dump(
            config, pg_dump, partial, plain=plain, show_progress=show_progress
        )
        if returncode != 0:
            raise BackupFailed("pg_dump failed: " + first_error(stderr, f"exit code {returncode}"))
        await asyncio.to_thread(_fsync, partial)
    except asyncio.CancelledError:
        left = _remove_partial(partial)
        raise Interrupted(
            f"no backup was written to {path} (pg_dump stopped, "
            + ("the partial file removed)" if left is None else f"{left})")
        ) from None
    except BaseException:
        _remove_partial(partial)
        raise
    try:
        os.replace(partial, path)
    except OSError as exc:
        left = _remove_partial(partial)  # a whole dump: say so if it stays
        raise BackupFailed(
            f"cannot write {path}: {exc.strerror}" + (f"; {left}" if left else "")
        ) from None
    return BackupResult(path=path, size=file_size(path), plain=plain, pg_dump=pg_dump)


def _remove_partial(partial: Path) -> str | None:
    """Remove a failed backup's partial file: None, or what was left and why. Never raises:
    in a directory that cannot be written (read-only, or made so since), the unlink fails
    too, and its error took the place of the one saying why the backup failed. A partial
    file left behind is never taken for a backup (its name says it is not one; the next
    backup to the same file truncates it)."""
    try:
        partial.unlink(missing_ok=True)
    except OSError as exc:
        return f"the partial file {partial} was left: {exc.strerror}"
    return None


def _create_private(partial: Path) -> None:
    """Create `partial` empty and readable by its owner only, before pg_dump (or our plain
    writer) opens it, which truncates it and keeps its mode: a backup holds password
    hashes and emails, and the umask's 0644 would let every local user read it."""
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)  # a partial file left by a crash keeps its old mode
        finally:
            os.close(descriptor)
    except OSError as exc:
        raise BackupFailed(f"cannot write {partial}: {exc.strerror}") from None


def _refuse_what_is_no_regular_file(path: Path) -> None:
    """BackupFailed, before anything is dumped, if `path` exists and is not a regular file:
    the finished dump is renamed over it, which turned `/dev/null` into a regular file
    and would replace a symlink (not the file it points to)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BackupFailed(f"cannot write {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise BackupFailed(
            f"{path} exists and is not a regular file (a symlink, directory, device or "
            "pipe), which the backup would replace: name a new or regular file, or a "
            "directory to write into"
        )


async def _run_pg_dump(
    config: DatabaseConfig, pg_dump: Tool, partial: Path, *, plain: bool, show_progress: bool
) -> tuple[int, list[str]]:
    """pg_dump into `partial`: its exit code and stderr. Whatever stops it half-way
    (cancelled too), pg_dump is killed and waited for before this returns."""
    arguments = [
        "--verbose",
        "--no-password",
        # The store's schema and nothing else: not the database's other schemas (which a
        # restore would not replace), nor its large objects (pg_dump leaves them out when
        # a schema is named). A pattern would be folded to lower case and read `*`, `?`
        # and `.` as wildcards: the name goes in double quotes, as pg_dump takes it.
        f"--schema={quoted_identifier(config.schema)}",
        "--format=plain" if plain else "--format=custom",
    ]
    if plain:
        # Restorable by any user with `psql < backup.sql`, not only by the dump's owner.
        arguments += ["--no-owner", "--no-privileges"]
    else:
        arguments.append(f"--file={partial}")

    stderr: list[str] = []
    with bytes_progress(enabled=show_progress) as progress:
        task = progress.add_task(f"backing up {config.database}", total=None)
        on_line = showing_tables(progress, task, "dumping")

        process = await asyncio.create_subprocess_exec(
            pg_dump.path,
            *arguments,
            env=tool_environment(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if plain else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
        assert process.stderr is not None
        workers = {asyncio.create_task(read_lines(process.stderr, stderr, on_line))}
        if plain:
            assert process.stdout is not None
            workers.add(asyncio.create_task(_write_plain_dump(process.stdout, partial, config)))
        try:
            while not all(worker.done() for worker in workers):
                progress.update(task, completed=file_size(partial))
                await asyncio.wait(workers, timeout=0.2, return_when=asyncio.FIRST_EXCEPTION)
                if any(w.done() and w.exception() is not None for w in workers):
                    break
            for worker in workers:
                await worker
            return await process.wait(), stderr
        except BaseException:
            for worker in workers:
                worker.cancel()
            await to_the_end(end_process(process, *workers))
            raise


# `pg_dump --schema=public` writes `CREATE SCHEMA public;` (and the schema's comment), which
# every database refuses, since every database has public: `psql -v ON_ERROR_STOP=1 <
# backup.sql` would stop at it. A plain backup of public comments these two statements out,
# leaving the file what a whole-database `pg_dump > backup.sql` of such a database writes.
# (A restore keeps the target's schema as it is in any case.)
_PUBLIC_SCHEMA_STATEMENT = re.compile(
    rb"(?:CREATE SCHEMA public;|COMMENT ON SCHEMA public IS '(?:[^'\n]|'')*';)\r?\n"
)
# pg_dump writes the schemas before any other object and before any data.
_AFTER_THE_SCHEMAS = re.compile(rb"(?:CREATE (?!SCHEMA )|COPY )")


class _PublicSchemaStatements:
    """A filter over a plain dump's bytes that comments out `_PUBLIC_SCHEMA_STATEMENT`s,
    looking at whole lines up to the first statement after the schemas."""

    def __init__(self) -> None:
        self._pending = b""
        self._passing = False

    def feed(self, chunk: bytes) -> bytes:
        if self._passing:
            return chunk
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        complete, self._pending = data[:cut], data[cut:]
        out = bytearray()
        for line in complete.splitlines(keepends=True):
            if self._passing:
                out += line
            elif _PUBLIC_SCHEMA_STATEMENT.fullmatch(line):
                out += b"-- " + line
            else:
                out += line
                self._passing = _AFTER_THE_SCHEMAS.match(line) is not None
        if self._passing:
            out += self._pending
            self._pending = b""
        return bytes(out)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


async def _write_plain_dump(
    stream: asyncio.StreamReader, partial: Path, config: DatabaseConfig
) -> None:
    """pg_dump's plain output into `partial` (see `_PublicSchemaStatements`)."""
    statements = _PublicSchemaStatements() if config.schema == "public" else None
    try:
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            while chunk := await stream.read(CHUNK):
                data = statements.feed(chunk) if statements else chunk
                await asyncio.to_thread(handle.write, data)
            if statements:
                await asyncio.to_thread(handle.write, statements.finish())
        finally:
            await asyncio.to_thread(handle.close)
    except OSError as exc:
        raise BackupFailed(f"cannot write {partial}: {exc}") from None


def _fsync(path: Path) -> None:
    """The dump on disk before it is renamed into place; BackupFailed naming the file if
    that fails (an I/O error, a full disk found only now)."""
    try:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        raise BackupFailed(f"cannot write {path}: {exc.strerror}") from None
