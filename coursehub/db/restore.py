"""Restore over pg_restore and psql.

Restore: all or nothing, into the target's schema only. The file is checked first
(`pg_restore --list` reads an archive's table of contents; a plain SQL file must
end with pg_dump's closing line, and is read through), and refused unless it
holds the target's schema alone and no large objects (pg_dump writes those in
transactions of their own, which would commit the restore half-way). Then the
whole replacement — dropping the schema's objects, creating every object, loading
every row — runs in ONE transaction on one psql connection, which commits only
after the dump was read to its end without error. PostgreSQL's DDL is
transactional, so anything going wrong (a corrupt or truncated archive found
half-way, a failed statement, the process killed) rolls back to the database
exactly as it was; other sessions keep reading the old data until the commit.
Restoring into a scratch database and renaming it over the target would give the
same guarantee only with CREATEDB rights, no other session connected to the
target, and the database's own owner, grants and settings lost; it cannot serve a
`?schema=` URL at all. The schema itself is kept, with its owner, grants and
comment: the dump's statements on it are left out.

Interrupted (`tool_processes.cancelled_by_signals`), a restore stops psql before it can
run another statement — the COMMIT may already be queued in its input, behind slow
statements such as index builds — and then asks the server whether the restore's
transaction committed, so its message is never a guess (`Interrupted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import secrets
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from coursehub.core.database import CONNECT_ERRORS, analyze_after_commit, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig, quoted_identifier
from coursehub.core.errors import Conflict, StoreError, first_line
from coursehub.db.dump_inspection import (
    BackupFile,
    RestoreFailed,
    cannot_read,
    inspect_backup,
    refuse_what_a_restore_cannot_hold,
    restorable_kind,
)
from coursehub.db.pgtools import Tool, find_tools
from coursehub.db.progress import bytes_progress
from coursehub.db.schema_contents import drop_schema_contents, sql_literal
from coursehub.db.tool_processes import (
    CHUNK,
    LINE_LIMIT,
    STOP_GRACE,
    Interrupted,
    end_process,
    file_size,
    first_error,
    read_lines,
    showing_tables,
    to_the_end,
    tool_environment,
)

# Tables that do not make a database "non-empty": Alembic's bookkeeping (a freshly
# migrated, unused database loses nothing by being replaced).
BOOKKEEPING_TABLES = frozenset({"alembic_version"})
NOT_EMPTY_MARKER = "coursehub-restore: target not empty"


class TargetNotEmpty(Conflict):
    code = "restore_target_not_empty"
    title = "The target database is not empty"


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
            quoted = f"{quoted_identifier(config.schema)}.{quoted_identifier(name)}"
            if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {quoted})"):
                holding.append(name)
        return holding
    finally:
        await connection.close()


def restore_prologue(schema: str, *, force: bool, announce: str | None = None) -> str:
    """SQL run before the dump, in the same transaction: with `announce`, a NOTICE
    `<announce> <server pid> <transaction id>` (`RestoreTransaction`); the emptiness guard
    (race-free, unlike the check made before starting), then everything in the schema
    dropped, the schema itself kept (`drop_schema_contents`)."""
    statements = ["BEGIN;"]
    if announce is not None:
        # psql writes notices to stderr, unbuffered: read before psql runs anything else.
        # The role's or database's own client_min_messages must not hide it; the dump sets
        # its own right after.
        statements.append("SET LOCAL client_min_messages = notice;")
        statements.append(
            f"DO $coursehub$ BEGIN RAISE NOTICE {sql_literal(announce + ' % %')}, "
            "pg_backend_pid(), txid_current(); END $coursehub$;"
        )
    if not force:
        bookkeeping = ", ".join(sql_literal(t) for t in sorted(BOOKKEEPING_TABLES))
        statements.append(
            f"""DO $coursehub$
DECLARE t record; found boolean;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = {sql_literal(schema)} AND c.relkind IN ('r', 'p')
             AND c.relname NOT IN ({bookkeeping}) LOOP
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', {sql_literal(schema)}, t.relname)
      INTO found;
    IF found THEN
      RAISE EXCEPTION '{NOT_EMPTY_MARKER} (table %)', t.relname;
    END IF;
  END LOOP;
END
$coursehub$;"""
        )
    statements.append(drop_schema_contents(schema))
    return "\n".join(statements) + "\n"


# --- restore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    archive: bool
    bytes_streamed: int
    warning: str | None = None  # restored, but something after it failed (ANALYZE)


async def _plain_chunks(path: Path, skip: tuple[tuple[int, int], ...]) -> AsyncIterator[bytes]:
    """The file's bytes, without those in the ranges `skip` (statements left out).
    RestoreFailed if reading it fails (an I/O error): raised before the COMMIT is sent,
    so the restore rolls back."""
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        raise cannot_read(path, exc) from None
    position = 0
    ranges = list(skip)
    try:
        while True:
            try:
                if ranges and position == ranges[0][0]:
                    position = ranges.pop(0)[1]
                    await asyncio.to_thread(handle.seek, position)
                    continue
                size = min(CHUNK, ranges[0][0] - position) if ranges else CHUNK
                chunk = await asyncio.to_thread(handle.read, size)
            except OSError as exc:
                raise cannot_read(path, exc) from None
            if not chunk:
                break
            yield chunk
            position += len(chunk)
    finally:
        with contextlib.suppress(OSError):  # never in place of the error that stopped it
            await asyncio.to_thread(handle.close)


def _write_use_list(use_list: str) -> Path:
    descriptor, name = tempfile.mkstemp(prefix="coursehub-restore-", suffix=".list")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(use_list)
    return Path(name)


@dataclass
class RestoreTransaction:
    """The server process running a restore and its transaction, as the restore's first
    statement announces them (`restore_prologue`); None until it has."""

    pid: int | None = None
    xid: int | None = None


class OutcomeUnknown(Exception):
    """The server could not say whether a restore's transaction committed."""


async def transaction_committed(config: DatabaseConfig, transaction: RestoreTransaction) -> bool:
    """Whether the restore's transaction committed, asked of the server once psql is gone.

    psql can stop between sending the COMMIT and reading its answer (Ctrl-C reaches it
    too), so neither its exit code nor its stderr settles it. Not announced: psql never got
    past the restore's first statement, so it never ran the COMMIT. A server process still
    in the transaction (psql killed in the middle of a statement: the server finishes the
    statement before it notices) is given STOP_GRACE, then terminated."""
    if transaction.xid is None:
        return False
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        terminated = False
        while (
            status := await connection.fetchval("SELECT txid_status($1)", transaction.xid)
        ) == "in progress":
            if loop.time() > deadline:
                if terminated:
                    raise OutcomeUnknown(
                        f"its server process (pid {transaction.pid}) is still running it"
                    )
                await connection.execute("SELECT pg_terminate_backend($1)", transaction.pid)
                terminated, deadline = True, loop.time() + STOP_GRACE
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    if status not in ("committed", "aborted"):
        raise OutcomeUnknown(f"the server reports {status!r} for its transaction")
    return bool(status == "committed")


@dataclass
class _RestoreRun:
    """What a restore's psql stage did, for the caller to tell the outcome."""

    transaction: RestoreTransaction
    psql_errors: list[str]
    source_errors: list[str]
    streamed: int = 0
    complete: bool = False  # the whole dump was read without error
    commit_sent: bool = False  # COMMIT written to psql: from then on it may commit
    psql_code: int | None = None
    source_code: int | None = None  # pg_restore's, for an archive
    # Whether the restore committed: False while the COMMIT was not sent; then None (it
    # may have) until known, and left None if the server could not say.
    committed: bool | None = False


async def restore_database(
    config: DatabaseConfig,
    file: Path,
    *,
    force: bool,
    embedded: bool = False,
    show_progress: bool = True,
    create_database: bool = False,
    on_database_created: Callable[[], None] | None = None,
) -> RestoreResult:
    """Replace the target schema's contents with the dump in `file`, in one transaction.

    Refuses a dump of another schema (or of several), or holding large objects, and a
    target holding rows unless `force`. A corrupt or truncated file fails with
    RestoreFailed and the target is left exactly as it was. Cancelled, it stops pg_restore
    and psql, and raises Interrupted saying whether the restore had committed (only if
    psql was already running the COMMIT; otherwise nothing was restored).

    `create_database`: a missing target database (and the URL's schema) is created, once
    the file has passed every check that needs no database; `on_database_created` is
    called if it was (before the restore proper starts). Should the restore then fail or
    be interrupted without committing, that database is dropped again, its message
    saying so (or why it was left: `_drop_created_database`).
    """
    target = config.redacted()
    nothing_restored = f"nothing was restored; {target} is as it was"
    try:
        await asyncio.to_thread(restorable_kind, file)
        tools = await find_tools(config, ("pg_restore", "psql"), prefer_wheel=embedded)
        backup = await inspect_backup(file, config.schema, tools["pg_restore"])
        refuse_what_a_restore_cannot_hold(backup, config.schema)
    except asyncio.CancelledError:
        raise Interrupted(nothing_restored) from None
    # Only now: a restore refused for its file leaves no new, empty database behind.
    created = create_database and await _create_database(config, file, nothing_restored)
    if created and on_database_created:
        on_database_created()
    run = _RestoreRun(transaction=RestoreTransaction(), psql_errors=[], source_errors=[])
    try:
        return await _restore(config, backup, tools, run, force=force, show_progress=show_progress)
    except Exception as exc:
        # A database this restore created goes again, unless the restore may have
        # committed into it: then it holds the backup, or may (the message says to check).
        if not created or run.committed is not False:
            raise
        raise await _without_created_database(config, file, exc) from exc


async def _create_database(config: DatabaseConfig, file: Path, nothing_restored: str) -> bool:
    """`ensure_database_exists`: whether this created the database. Cancelled meanwhile
    (its CREATE DATABASE may be on its way), it waits to learn whether it did, and if so
    drops the database again before saying it was interrupted."""
    creating = asyncio.ensure_future(ensure_database_exists(config))
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        interrupted = Interrupted(nothing_restored)
        if not await to_the_end(creating):
            raise interrupted from None
        raise await _without_created_database(config, file, interrupted) from None


# Relations in the database newer than the database itself (pg_database's row for it was
# written by its CREATE DATABASE): none but what another session created since, the
# restore's own having been rolled back; those its template gave it are older.
_CREATED_SINCE_THE_DATABASE = """
SELECT EXISTS (
  SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
    pg_database d
  WHERE d.datname = current_database()
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND age(c.xmin) < age(d.xmin)
)"""


async def _drop_created_database(config: DatabaseConfig) -> str:
    """Drop the database a failed restore created; the clause saying so, or why it was left.

    Not `drop_database`'s WITH (FORCE), nor when something was created in it meanwhile:
    another session using it (a second restore or `db migrate` into the same URL, the app)
    may have put its own work there, even committed it. DROP DATABASE waits 5 seconds for
    other sessions to leave, then refuses."""
    name = config.database
    try:
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
        try:
            used = await connection.fetchval(_CREATED_SINCE_THE_DATABASE)
        finally:
            await connection.close()
        if used:
            return (
                f"the database {name!r} it created was left: another session has created "
                "tables in it since"
            )
        admin = await asyncpg.connect(**config.with_database("postgres").asyncpg_connect_kwargs())
        try:
            await admin.execute(f"DROP DATABASE {quoted_identifier(name)}")
        finally:
            await admin.close()
    except asyncpg.InvalidCatalogNameError:
        pass  # dropped meanwhile by someone else: gone all the same
    except CONNECT_ERRORS as exc:
        return (
            f"the empty database {name!r} it created was left ({first_line(exc)}) "
            "and can be dropped"
        )
    return f"the database {name!r} it created was dropped again"


async def _without_created_database(
    config: DatabaseConfig, file: Path, failure: Exception
) -> Exception:
    """`failure` (of a restore that committed nothing into the database it created), once
    that database is dropped again, its message saying so (or why it was left)."""
    # Run to its end even if a signal arrives meanwhile: the restore has failed already,
    # and the signal's Interrupted carries this message (`cancelled_by_signals`).
    clause = await to_the_end(_drop_created_database(config))
    if isinstance(failure, StoreError):
        return dataclasses.replace(failure, detail=f"{failure.detail}; {clause}")
    if isinstance(failure, Interrupted):
        return Interrupted(f"{failure}; {clause}")
    return RestoreFailed(
        f"restoring {file} failed ({first_line(failure)}); nothing was restored; {clause}"
    )


async def _restore(
    config: DatabaseConfig,
    backup: BackupFile,
    tools: dict[str, Tool],
    run: _RestoreRun,
    *,
    force: bool,
    show_progress: bool,
) -> RestoreResult:
    """`restore_database` once the file has passed its checks and the database exists;
    whether the restore committed (or may have), in `run.committed`."""
    file = backup.path
    target = config.redacted()
    try:
        if not force:
            holding = await tables_with_rows(config)
            if holding:
                raise TargetNotEmpty(
                    f"{target} is not empty (rows in {', '.join(holding)}); "
                    "pass --force to replace everything in it with the backup"
                )
    except asyncio.CancelledError:
        raise Interrupted(f"nothing was restored; {target} is as it was") from None

    try:
        await _stream_restore(config, backup, tools, run, force=force, show_progress=show_progress)
    except asyncio.CancelledError:
        raise await _interrupted_restore(config, file, run) from None

    committed = run.psql_code == 0 and run.complete
    if not committed and run.commit_sent:
        # psql failed after the COMMIT was sent: the COMMIT failed, or psql was stopped
        # (Ctrl-C reaches it too) once it had run it. The server knows which.
        try:
            committed = await transaction_committed(config, run.transaction)
        except asyncio.CancelledError:
            raise await _interrupted_restore(config, file, run) from None
        except Exception as exc:
            reason = first_error(run.psql_errors, f"psql exit code {run.psql_code}")
            raise RestoreFailed(
                f"restoring {file} failed as it committed ({reason}), and the server could "
                f"not say whether it did ({first_line(exc)}): check {target}"
            ) from None
    run.committed = committed
    if committed:
        try:
            warning = await analyze_after_commit(config)  # the restored tables have no statistics
        except asyncio.CancelledError:
            raise Interrupted(
                f"the restore had committed: {target} holds {file}, but its statistics "
                "were not refreshed (run ANALYZE on it)"
            ) from None
        return RestoreResult(
            path=file, archive=backup.archive, bytes_streamed=run.streamed, warning=warning
        )
    if any(NOT_EMPTY_MARKER in line for line in run.psql_errors):
        raise TargetNotEmpty(
            f"{target} received rows while the restore started; "
            "nothing was changed. Pass --force to replace everything in it"
        )
    if not run.complete and run.source_code not in (0, None):
        reason = first_error(run.source_errors, f"pg_restore exit code {run.source_code}")
        raise RestoreFailed(f"{file} is corrupt or truncated ({reason}); nothing was changed")
    reason = first_error(run.psql_errors, f"psql exit code {run.psql_code}")
    raise RestoreFailed(f"restoring {file} failed ({reason}); nothing was changed")


async def _interrupted_restore(config: DatabaseConfig, file: Path, run: _RestoreRun) -> Interrupted:
    """What an interrupted restore left, once psql is gone: asked of the server (its
    answer also in `run.committed`)."""
    target = config.redacted()
    run.committed = None
    try:
        committed = await to_the_end(transaction_committed(config, run.transaction))
    except Exception as exc:
        return Interrupted(
            f"could not tell whether the restore committed ({first_line(exc)}); check {target}"
        )
    run.committed = committed
    if committed:
        return Interrupted(
            f"the restore had already committed: {target} holds {file}, but its "
            "statistics were not refreshed (run ANALYZE on it)"
        )
    return Interrupted(f"nothing was restored; {target} is as it was")


async def _stream_restore(
    config: DatabaseConfig,
    backup: BackupFile,
    tools: dict[str, Tool],
    run: _RestoreRun,
    *,
    force: bool,
    show_progress: bool,
) -> None:
    """The dump through psql, in one transaction, COMMIT last; what happened, in `run`.

    Whatever stops it half-way (cancelled too), pg_restore and psql have ended when this
    raises: psql stopped before it could run another statement (the COMMIT may be queued
    in its input behind slow ones: index builds, a materialized view's refresh)."""
    file = backup.path
    env = tool_environment(config)
    marker = f"coursehub-restore-{secrets.token_hex(8)}"
    announced = re.compile(rf"NOTICE:\s+{marker} (\d+) (\d+)\s*$")
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
    source: asyncio.subprocess.Process | None = None
    use_list: Path | None = None
    total = None if backup.archive else file_size(file)
    with bytes_progress(enabled=show_progress) as progress:
        task = progress.add_task(f"restoring {file.name}", total=total)
        on_source_line = showing_tables(progress, task, "restoring")

        def on_psql_line(line: str) -> None:
            match = announced.search(line)
            if match:
                run.transaction.pid, run.transaction.xid = int(match[1]), int(match[2])
                run.psql_errors.pop()  # not an error

        psql_reader = asyncio.create_task(read_lines(psql.stderr, run.psql_errors, on_psql_line))
        source_reader: asyncio.Task[None] | None = None
        try:
            try:
                prologue = restore_prologue(config.schema, force=force, announce=marker)
                psql.stdin.write(prologue.encode())
                if backup.archive:
                    arguments = ["--verbose", "--no-owner", "--no-privileges", "--file=-"]
                    if backup.use_list is not None:
                        use_list = await asyncio.to_thread(_write_use_list, backup.use_list)
                        arguments.append(f"--use-list={use_list}")
                    source = await asyncio.create_subprocess_exec(
                        tools["pg_restore"].path,
                        *arguments,
                        str(file),
                        env=env,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        limit=LINE_LIMIT,
                    )
                    assert source.stdout is not None and source.stderr is not None
                    source_reader = asyncio.create_task(
                        read_lines(source.stderr, run.source_errors, on_source_line)
                    )
                    chunks: AsyncIterator[bytes] = _stream_chunks(source.stdout)
                else:
                    chunks = _plain_chunks(file, backup.skip)
                async for chunk in chunks:
                    psql.stdin.write(chunk)
                    await psql.stdin.drain()
                    run.streamed += len(chunk)
                    progress.update(task, completed=run.streamed)
                if source is not None:
                    assert source_reader is not None
                    await source_reader
                    run.complete = await source.wait() == 0
                else:
                    run.complete = True
                if run.complete:
                    # Only now, with the whole dump read without error, may it commit.
                    run.commit_sent, run.committed = True, None
                    psql.stdin.write(b"COMMIT;\n")
                    await psql.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # psql stopped at an error: its stderr says which
            # pg_restore still writing: psql stopped early.
            await end_process(source, source_reader)
            run.source_code = source.returncode if source is not None else None
            # End of input without COMMIT: psql disconnects and the server rolls back.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                psql.stdin.close()
                await psql.stdin.wait_closed()
            run.psql_code = await psql.wait()
            await psql_reader
        except BaseException:
            await to_the_end(_stop_restore_tools(psql, psql_reader, source, source_reader))
            raise
        finally:
            if use_list is not None:
                use_list.unlink(missing_ok=True)


async def _stop_restore_tools(
    psql: asyncio.subprocess.Process,
    psql_reader: asyncio.Task[None],
    source: asyncio.subprocess.Process | None,
    source_reader: asyncio.Task[None] | None,
) -> None:
    """psql stopped before it runs another statement, pg_restore killed; both waited for.

    SIGINT is psql's Ctrl-C: it cancels the running statement (the error stops it) and,
    reading a script, exits rather than read on. Its input is dropped unsent, not closed
    (closing would wait until psql had read what is buffered)."""
    if psql.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            psql.send_signal(signal.SIGINT)
    assert psql.stdin is not None
    if not psql.stdin.is_closing():
        psql.stdin.transport.abort()
    await end_process(psql, psql_reader, first=None)
    await end_process(source, source_reader)


async def _stream_chunks(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await stream.read(CHUNK):
        yield chunk
