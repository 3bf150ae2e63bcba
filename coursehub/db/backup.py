"""Backup and restore over pg_dump, pg_restore and psql.

Backup: pg_dump takes one snapshot (a repeatable-read transaction) for the whole
dump, so a backup taken while the store is writing is consistent: every order
with all its items or not at all. It writes to `.<name>.partial` beside the
target and renames it into place only when pg_dump succeeded, so a failed or
interrupted backup never leaves a file that looks like a good one.

Restore: all or nothing. The file is checked first (`pg_restore --list` reads an
archive's table of contents; a plain SQL file must end with pg_dump's closing
line), and then the whole replacement — dropping the old schema, creating every
object, loading every row — runs in ONE transaction on one psql connection,
which commits only after the dump was read to its end without error.
PostgreSQL's DDL is transactional, so anything going wrong (a corrupt or
truncated archive found half-way, a failed statement, the process killed) rolls
back to the database exactly as it was; other sessions keep reading the old
data until the commit. Restoring into a scratch database and renaming it over
the target would give the same guarantee only with CREATEDB rights, no other
session connected to the target, and the database's own owner, grants and
settings lost; it cannot serve a `?schema=` URL at all.

Passwords go to the tools through the environment (PGPASSWORD), never argv,
where `ps` would show them. Every tool runs with asyncio subprocesses, so the
event loop keeps drawing progress while they work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from coursehub.core.database import analyze_after_commit
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import Conflict, StoreError
from coursehub.db.pgtools import Tool, find_tools
from coursehub.db.progress import bytes_progress

ARCHIVE_MAGIC = b"PGDMP"
PLAIN_DUMP_END = "-- PostgreSQL database dump complete"
PLAIN_DUMP_START = "-- PostgreSQL database dump"
CHUNK = 1 << 20
# Longest stderr line read whole (psql quotes a failing COPY row in its error's context).
LINE_LIMIT = 16 << 20
# How far into a plain dump to look for its CREATE SCHEMA; pg_dump writes schemas
# before any other object.
SCHEMA_SCAN_LIMIT = 16 << 20
# Tables that do not make a database "non-empty": Alembic's bookkeeping (a freshly
# migrated, unused database loses nothing by being replaced).
BOOKKEEPING_TABLES = frozenset({"alembic_version"})
NOT_EMPTY_MARKER = "coursehub-restore: target not empty"


class BackupFailed(StoreError):
    status = 500
    code = "backup_failed"
    title = "Backup failed"


class RestoreFailed(StoreError):
    status = 500
    code = "restore_failed"
    title = "Restore failed"


class TargetNotEmpty(Conflict):
    code = "restore_target_not_empty"
    title = "The target database is not empty"


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


async def _lines(
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


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
    """Dump the database to `file` (custom format, or plain SQL with `plain`)."""
    tools = await find_tools(config, ("pg_dump",), prefer_wheel=embedded)
    pg_dump = tools["pg_dump"]
    path = file or default_backup_path(plain=plain)
    if path.is_dir():
        path = path / default_backup_path(plain=plain)
    if not path.parent.is_dir():
        raise BackupFailed(f"cannot write {path}: the directory {path.parent} does not exist")
    partial = path.with_name(f".{path.name}.partial")
    arguments = [
        "--verbose",
        "--no-password",
        f"--file={partial}",
        "--format=plain" if plain else "--format=custom",
    ]
    if plain:
        # Restorable by any user with `psql < backup.sql`, not only by the dump's owner.
        arguments += ["--no-owner", "--no-privileges"]
    if config.schema != "public":
        arguments.append(f"--schema={config.schema}")

    stderr: list[str] = []
    with bytes_progress(enabled=show_progress) as progress:
        task = progress.add_task(f"backing up {config.database}", total=None)

        def on_line(line: str) -> None:
            described = describe_verbose_line(line, "dumping")
            if described:
                progress.update(task, description=described)

        process = await asyncio.create_subprocess_exec(
            pg_dump.path,
            *arguments,
            env=tool_environment(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
        assert process.stderr is not None
        reader = asyncio.create_task(_lines(process.stderr, stderr, on_line))
        try:
            while not reader.done():
                progress.update(task, completed=_file_size(partial))
                await asyncio.wait({reader}, timeout=0.2)
            await reader
            returncode = await process.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            partial.unlink(missing_ok=True)
            raise
    if returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupFailed("pg_dump failed: " + first_error(stderr, f"exit code {returncode}"))
    await asyncio.to_thread(_fsync, partial)
    os.replace(partial, path)
    return BackupResult(path=path, size=_file_size(path), plain=plain, pg_dump=pg_dump)


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


# --- restore: looking at the file ----------------------------------------------------


@dataclass(frozen=True)
class BackupFile:
    path: Path
    archive: bool  # pg_dump's custom, directory or tar format (read by pg_restore)
    creates_schema: bool  # the dump creates the target schema itself


def _path_kind(path: Path) -> str:
    if path.is_dir():
        return "directory"
    return "file" if path.exists() else "missing"


def _read_head(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def _read_tail(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(max(0, _file_size(path) - size))
        return handle.read()


def _create_schema_statement(schema: str) -> re.Pattern[str]:
    quoted = re.escape(schema)
    return re.compile(rf'^CREATE SCHEMA (?:{quoted}|"{quoted}");', re.MULTILINE)


def _plain_dump_creates_schema(path: Path, schema: str) -> bool:
    pattern = _create_schema_statement(schema)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        read = 0
        for line in handle:
            read += len(line)
            if pattern.match(line):
                return True
            # Schemas come first; the first other CREATE means there is none to find.
            if (line.startswith("CREATE ") and not line.startswith("CREATE SCHEMA")) or (
                read > SCHEMA_SCAN_LIMIT
            ):
                return False
    return False


async def inspect_backup(path: Path, schema: str, pg_restore: Tool | None) -> BackupFile:
    """What kind of dump `path` is, checked to be complete enough to try; RestoreFailed if
    it is not a dump at all, or visibly corrupt or truncated."""
    kind = await asyncio.to_thread(_path_kind, path)
    if kind == "missing":
        raise RestoreFailed(f"no such file: {path}")
    if kind == "directory" or (await asyncio.to_thread(_read_head, path, 5)) == ARCHIVE_MAGIC:
        archive = True
    else:
        head = (await asyncio.to_thread(_read_head, path, 4096)).decode("utf-8", "replace")
        archive = PLAIN_DUMP_START not in head
    if not archive:
        tail = (await asyncio.to_thread(_read_tail, path, 4096)).decode("utf-8", "replace")
        if PLAIN_DUMP_END not in tail:
            raise RestoreFailed(
                f"{path} is truncated or not a complete pg_dump file: it lacks pg_dump's "
                f"closing line ({PLAIN_DUMP_END!r}); nothing was changed"
            )
        creates = await asyncio.to_thread(_plain_dump_creates_schema, path, schema)
        return BackupFile(path=path, archive=False, creates_schema=creates)
    assert pg_restore is not None
    listing = await _run_capture(pg_restore.path, "--list", str(path))
    if listing.returncode != 0:
        reason = first_error(listing.stderr.splitlines(), "pg_restore --list failed")
        if "unsupported version" in reason:
            raise RestoreFailed(
                f"{path} was written by a newer pg_dump than {pg_restore.describe()} can read "
                f"({reason}); restore it into a PostgreSQL server at least as new as the one "
                "it came from (restoring into an older major version is unsupported); "
                "nothing was changed"
            )
        raise RestoreFailed(
            f"{path} is not a readable pg_dump archive ({reason}); nothing was changed"
        )
    schema_entry = re.compile(rf"^\d+; \d+ \d+ SCHEMA - {re.escape(schema)} ", re.MULTILINE)
    creates = bool(schema_entry.search(listing.stdout))
    return BackupFile(path=path, archive=True, creates_schema=creates)


@dataclass(frozen=True)
class Captured:
    returncode: int
    stdout: str
    stderr: str


async def _run_capture(*command: str, env: dict[str, str] | None = None) -> Captured:
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Captured(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


# --- restore: the target ---------------------------------------------------------------


async def tables_with_rows(config: DatabaseConfig) -> list[str]:
    """Tables of the target schema holding at least one row (bookkeeping tables aside)."""
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        tables = await connection.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            config.schema,
        )
        holding = []
        for row in tables:
            name = row["relname"]
            if name in BOOKKEEPING_TABLES:
                continue
            quoted = f"{_identifier(config.schema)}.{_identifier(name)}"
            if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {quoted})"):
                holding.append(name)
        return holding
    finally:
        await connection.close()


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def restore_prologue(schema: str, *, force: bool, create_schema: bool) -> str:
    """SQL run before the dump, in the same transaction: the emptiness guard (race-free,
    unlike the check made before starting), then the old schema dropped."""
    statements = ["BEGIN;"]
    if not force:
        bookkeeping = ", ".join(_literal(t) for t in sorted(BOOKKEEPING_TABLES))
        statements.append(
            f"""DO $coursehub$
DECLARE t record; found boolean;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = {_literal(schema)} AND c.relkind IN ('r', 'p')
             AND c.relname NOT IN ({bookkeeping}) LOOP
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', {_literal(schema)}, t.relname)
      INTO found;
    IF found THEN
      RAISE EXCEPTION '{NOT_EMPTY_MARKER} (table %)', t.relname;
    END IF;
  END LOOP;
END
$coursehub$;"""
        )
    statements.append(f"DROP SCHEMA IF EXISTS {_identifier(schema)} CASCADE;")
    if not create_schema:
        statements.append(f"CREATE SCHEMA {_identifier(schema)};")
    return "\n".join(statements) + "\n"


# --- restore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    archive: bool
    bytes_streamed: int
    warning: str | None = None  # restored, but something after it failed (ANALYZE)


async def _plain_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


async def restore_database(
    config: DatabaseConfig,
    file: Path,
    *,
    force: bool,
    embedded: bool = False,
    show_progress: bool = True,
) -> RestoreResult:
    """Replace the target schema with the dump in `file`, in one transaction.

    Refuses a target holding rows unless `force`. A corrupt or truncated file fails
    with RestoreFailed and the target is left exactly as it was.
    """
    if await asyncio.to_thread(_path_kind, file) == "missing":
        raise RestoreFailed(f"no such file: {file}")
    tools = await find_tools(config, ("pg_restore", "psql"), prefer_wheel=embedded)
    backup = await inspect_backup(file, config.schema, tools["pg_restore"])
    if not force:
        holding = await tables_with_rows(config)
        if holding:
            raise TargetNotEmpty(
                f"{config.redacted()} is not empty (rows in {', '.join(holding)}); "
                "pass --force to replace everything in it with the backup"
            )
    env = tool_environment(config)
    psql = await asyncio.create_subprocess_exec(
        tools["psql"].path,
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "--set=ON_ERROR_STOP=1",
        "--file=-",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    assert psql.stdin is not None and psql.stderr is not None
    psql_errors: list[str] = []
    source_errors: list[str] = []
    source: asyncio.subprocess.Process | None = None
    streamed = 0
    complete = False
    total = None if backup.archive else _file_size(file)
    with bytes_progress(enabled=show_progress) as progress:
        task = progress.add_task(f"restoring {file.name}", total=total)

        def on_source_line(line: str) -> None:
            described = describe_verbose_line(line, "restoring")
            if described:
                progress.update(task, description=described)

        psql_reader = asyncio.create_task(_lines(psql.stderr, psql_errors, lambda _: None))
        source_reader: asyncio.Task[None] | None = None
        try:
            psql.stdin.write(
                restore_prologue(
                    config.schema, force=force, create_schema=backup.creates_schema
                ).encode()
            )
            if backup.archive:
                source = await asyncio.create_subprocess_exec(
                    tools["pg_restore"].path,
                    "--verbose",
                    "--no-owner",
                    "--no-privileges",
                    "--file=-",
                    str(file),
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    limit=LINE_LIMIT,
                )
                assert source.stdout is not None and source.stderr is not None
                source_reader = asyncio.create_task(
                    _lines(source.stderr, source_errors, on_source_line)
                )
                chunks: AsyncIterator[bytes] = _stream_chunks(source.stdout)
            else:
                chunks = _plain_chunks(file)
            async for chunk in chunks:
                psql.stdin.write(chunk)
                await psql.stdin.drain()
                streamed += len(chunk)
                progress.update(task, completed=streamed)
            if source is not None:
                assert source_reader is not None
                await source_reader
                complete = await source.wait() == 0
            else:
                complete = True
            if complete:
                # Only now, with the whole dump read without error, may it commit.
                psql.stdin.write(b"COMMIT;\n")
                await psql.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            complete = False  # psql stopped at an error: its stderr says which
        finally:
            if source is not None and source.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    source.kill()
                await source.wait()
            # End of input without COMMIT: psql disconnects and the server rolls back.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                psql.stdin.close()
                await psql.stdin.wait_closed()
            await psql_reader
            psql_code = await psql.wait()

    if psql_code == 0 and complete:
        warning = await analyze_after_commit(config)  # the restored tables have no statistics
        return RestoreResult(
            path=file, archive=backup.archive, bytes_streamed=streamed, warning=warning
        )
    if any(NOT_EMPTY_MARKER in line for line in psql_errors):
        raise TargetNotEmpty(
            f"{config.redacted()} received rows while the restore started; "
            "nothing was changed. Pass --force to replace everything in it"
        )
    if not complete and source is not None and source.returncode not in (0, None):
        reason = first_error(source_errors, f"pg_restore exit code {source.returncode}")
        raise RestoreFailed(f"{file} is corrupt or truncated ({reason}); nothing was changed")
    reason = first_error(psql_errors, f"psql exit code {psql_code}")
    raise RestoreFailed(f"restoring {file} failed ({reason}); nothing was changed")


async def _stream_chunks(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await stream.read(CHUNK):
        yield chunk
