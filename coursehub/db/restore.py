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
import os
import re
import secrets
import shlex
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg

from coursehub.core.database import analyze_after_commit, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig, quoted_identifier
from coursehub.core.errors import Conflict, StoreError, first_line
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

ARCHIVE_MAGIC = b"PGDMP"
PLAIN_DUMP_END = "-- PostgreSQL database dump complete"
PLAIN_DUMP_START = "-- PostgreSQL database dump"
# Tables that do not make a database "non-empty": Alembic's bookkeeping (a freshly
# migrated, unused database loses nothing by being replaced).
BOOKKEEPING_TABLES = frozenset({"alembic_version"})
NOT_EMPTY_MARKER = "coursehub-restore: target not empty"


class RestoreFailed(StoreError):
    status = 500
    code = "restore_failed"
    title = "Restore failed"


class TargetNotEmpty(Conflict):
    code = "restore_target_not_empty"
    title = "The target database is not empty"


# --- restore: looking at the file ----------------------------------------------------


@dataclass(frozen=True)
class BackupFile:
    path: Path
    archive: bool  # pg_dump's custom, directory or tar format (read by pg_restore)
    # The schemas the dump creates or puts objects in, as pg_dump names them.
    schemas: frozenset[str]
    large_objects: bool
    # The restore keeps the target's schema as it is, so the dump's statements on the
    # schema itself (its CREATE SCHEMA, owner, grants, comment) are left out: for an
    # archive, its table of contents with those entries commented out (for `pg_restore
    # --use-list`); for a plain file, the byte ranges of those statements, in order.
    use_list: str | None = None
    skip: tuple[tuple[int, int], ...] = ()


def _path_kind(path: Path) -> str:
    if path.is_dir():
        return "directory"
    return "file" if path.exists() else "missing"


def _read_head(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def _read_tail(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(max(0, file_size(path) - size))
        return handle.read()


def _sql_name(written: str) -> str:
    """An identifier as SQL reads it: `"MySchema"` → MySchema, `shop` → shop."""
    if written.startswith('"') and written.endswith('"') and len(written) > 1:
        return written[1:-1].replace('""', '"')
    return written.lower()


# What pg_dump writes in a plain dump. Every object comes with a comment naming it, its
# kind and its schema (`-` for objects outside any schema):
_PLAIN_ENTRY = re.compile(
    r"-- (?:Data for )?Name: (?P<name>.*?); Type: (?P<kind>.*?); Schema: (?P<schema>.*?); Owner: "
)
_LARGE_OBJECT_KINDS = frozenset({"BLOB", "BLOBS", "BLOB METADATA", "LARGE OBJECT", "LARGE OBJECTS"})
_LARGE_OBJECT_CALL = re.compile(rb"SELECT (?:pg_catalog\.)?lo_(?:create|open)\(")
_CREATE_SCHEMA = re.compile(rb'CREATE SCHEMA (?P<name>"(?:[^"]|"")+"|[^\s";]+);\r?\n')
# pg_dump before 10.3 set the search_path and left names unqualified.
_SEARCH_PATH = re.compile(rb'SET search_path = (?P<name>"(?:[^"]|"")+"|[^\s",;]+)')
_COPY_FROM_STDIN = re.compile(rb"COPY .* FROM stdin;\r?\n")


def _statements_on_the_schema(schema: str) -> re.Pattern[bytes]:
    """The one-line statements pg_dump writes on the schema itself: CREATE SCHEMA, its
    owner, its comment, its grants, its security label."""
    spellings = [quoted_identifier(schema)]
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", schema):
        spellings.append(schema)  # pg_dump quotes only the names that need it
    name = "(?:" + "|".join(re.escape(spelling) for spelling in spellings) + ")"
    literal = r"'(?:[^'\n]|'')*'"
    return re.compile(
        (
            rf"(?:CREATE SCHEMA {name}|ALTER SCHEMA {name} OWNER TO [^;\n]+"
            rf"|COMMENT ON SCHEMA {name} IS {literal}"
            rf"|(?:GRANT|REVOKE) [^;\n]* ON SCHEMA {name} (?:TO|FROM) [^;\n]+"
            rf"|SECURITY LABEL (?:FOR [^;\n]+ )?ON SCHEMA {name} IS {literal});\r?\n"
        ).encode()
    )


def _scan_plain_dump(path: Path, schema: str) -> BackupFile:
    """Read a plain dump through, as psql will (COPY data is skipped: its rows are no
    statements), for the schemas it names, its large objects and its statements on the
    target schema itself."""
    on_the_schema = _statements_on_the_schema(schema)
    schemas: set[str] = set()
    large_objects = False
    skip: list[tuple[int, int]] = []
    in_copy = False
    offset = 0
    with path.open("rb") as handle:
        for line in handle:
            start, offset = offset, offset + len(line)
            if in_copy:
                in_copy = not (line.startswith(b"\\.") and line.rstrip(b"\r\n") == b"\\.")
            elif line.startswith(b"-- "):
                entry = _PLAIN_ENTRY.match(line.decode("utf-8", "replace"))
                if entry is None:
                    continue
                if entry["kind"] in _LARGE_OBJECT_KINDS:
                    large_objects = True
                elif entry["kind"] == "SCHEMA":
                    schemas.add(entry["name"])
                elif entry["schema"] != "-":
                    schemas.add(entry["schema"])
            elif _COPY_FROM_STDIN.fullmatch(line):
                in_copy = True
            elif _LARGE_OBJECT_CALL.match(line):
                large_objects = True
            elif on_the_schema.fullmatch(line):
                skip.append((start, offset))
                if line.startswith(b"CREATE SCHEMA "):
                    schemas.add(schema)
            elif created := _CREATE_SCHEMA.fullmatch(line):
                schemas.add(_sql_name(created["name"].decode("utf-8", "replace")))
            elif search_path := _SEARCH_PATH.match(line):
                name = _sql_name(search_path["name"].decode("utf-8", "replace"))
                if name != "pg_catalog":
                    schemas.add(name)
    return BackupFile(
        path=path,
        archive=False,
        schemas=frozenset(schemas),
        large_objects=large_objects,
        skip=tuple(skip),
    )


# `pg_restore --list`: `ID; CATALOG OID KIND SCHEMA NAME OWNER`, the kind in capitals (one
# or more words), the schema `-` for objects outside any schema.
_ARCHIVE_ENTRY = re.compile(r"(?P<id>\d+); \d+ \d+ (?P<rest>.*)")
_LARGE_OBJECT_ENTRY = re.compile(r"(?:BLOBS?|BLOB METADATA|LARGE OBJECTS?) ")
_ENTRY_WITHOUT_SCHEMA = re.compile(r"[A-Z]+(?: [A-Z]+)* - ")
_ENTRY_SCHEMA = re.compile(r"[A-Z]+(?: [A-Z]+)* (?P<schema>\S+)")
# The schema itself, then (outside any schema) its comment, grants and security label;
# each followed by the schema's name and its owner.
_SCHEMA_ENTRY = re.compile(r"(?:SCHEMA|COMMENT - SCHEMA|ACL - SCHEMA|SECURITY LABEL - SCHEMA) ")


def _name_before_owner(named: str) -> str:
    """`public pg_database_owner` → public (the owner comes last, and may be empty)."""
    return named.rsplit(" ", 1)[0] if " " in named else named


def _other_schema(rest: str, created: list[str]) -> str:
    """The schema of an entry outside the target's: one the archive creates if the entry
    names it (the longest: names may hold spaces), else the word after the kind."""
    for name in sorted(created, key=len, reverse=True):
        if re.match(rf"[A-Z]+(?: [A-Z]+)*? {re.escape(name)} ", rest):
            return name
    other = _ENTRY_SCHEMA.match(rest)
    return other["schema"] if other else rest


def _read_archive_listing(path: Path, listing: str, in_target: set[str], schema: str) -> BackupFile:
    """The archive's schemas and large objects from its table of contents. `in_target`:
    the ids of the entries in the target schema, as `pg_restore --schema` selects them
    (an exact name, unlike the listing's fields, which names with spaces make ambiguous)."""
    created = [
        _name_before_owner(entry["rest"].removeprefix("SCHEMA - "))
        for entry in map(_ARCHIVE_ENTRY.fullmatch, listing.splitlines())
        if entry is not None and entry["rest"].startswith("SCHEMA - ")
    ]
    schemas: set[str] = set()
    large_objects = False
    lines = []
    leaves_out = False
    for line in listing.splitlines():
        entry = _ARCHIVE_ENTRY.fullmatch(line)
        if entry is not None:
            rest = entry["rest"]
            on_a_schema = _SCHEMA_ENTRY.match(rest)
            if _LARGE_OBJECT_ENTRY.match(rest):
                large_objects = True
            elif on_a_schema:
                named = rest[on_a_schema.end() :].removeprefix("- ")
                name = _name_before_owner(named)
                if rest.startswith("SCHEMA "):
                    schemas.add(name)
                if name == schema:
                    line = ";" + line
                    leaves_out = True
            elif entry["id"] in in_target:
                schemas.add(schema)
            elif not _ENTRY_WITHOUT_SCHEMA.match(rest):
                schemas.add(_other_schema(rest, created))
        lines.append(line)
    return BackupFile(
        path=path,
        archive=True,
        schemas=frozenset(schemas),
        large_objects=large_objects,
        use_list="\n".join(lines) + "\n" if leaves_out else None,
    )


async def inspect_backup(path: Path, schema: str, pg_restore: Tool | None) -> BackupFile:
    """What kind of dump `path` is and what it holds, checked to be complete enough to try;
    RestoreFailed if it is not a dump at all, or visibly corrupt or truncated."""
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
        return await asyncio.to_thread(_scan_plain_dump, path, schema)
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
    target = await _run_capture(pg_restore.path, "--list", f"--schema={schema}", str(path))
    if target.returncode != 0:
        reason = first_error(target.stderr.splitlines(), "pg_restore --list failed")
        raise RestoreFailed(
            f"{path} is not a readable pg_dump archive ({reason}); nothing was changed"
        )
    in_target = {
        entry["id"]
        for entry in map(_ARCHIVE_ENTRY.fullmatch, target.stdout.splitlines())
        if entry is not None
    }
    return _read_archive_listing(path, listing.stdout, in_target, schema)


def _pattern(schema: str) -> str:
    """`schema` as pg_dump's --schema pattern for exactly that name (quoted if need be)."""
    return schema if re.fullmatch(r"[a-z_][a-z0-9_]*", schema) else quoted_identifier(schema)


def _schema_in_url(schema: str) -> str:
    return "no ?schema=" if schema == "public" else f"?schema={quote(schema, safe='')}"


def refuse_what_a_restore_cannot_hold(backup: BackupFile, schema: str) -> None:
    """RestoreFailed, before anything is changed, for a dump that is not of the target's
    schema alone, or that holds large objects."""
    path = backup.path
    if backup.large_objects:
        # pg_dump writes large objects in BEGIN … COMMIT of their own, which would commit
        # the restore's transaction half-way; the store's schema has none.
        raise RestoreFailed(
            f"{path} holds large objects, which the store does not use and a restore cannot "
            "load all or nothing (pg_dump writes them in transactions of their own); "
            "restore a dump without them (pg_dump --schema=NAME, as coursehub db backup "
            "makes, leaves them out); nothing was changed"
        )
    others = sorted(backup.schemas - {schema})
    if not others:
        return
    if len(backup.schemas) == 1:
        (held,) = others
        raise RestoreFailed(
            f'{path} is a backup of schema "{held}", but the target is schema "{schema}" '
            f"(DATABASE_URL has {_schema_in_url(schema)}); restore it with "
            f"{_schema_in_url(held)} in DATABASE_URL; nothing was changed"
        )
    named = ", ".join(f'"{name}"' for name in sorted(backup.schemas))
    extract = (
        f"pg_restore {shlex.quote('--schema=' + schema)} --file=store.sql "
        f"{shlex.quote(str(path))}, then restore store.sql"
        if backup.archive
        else "pg_dump " + shlex.quote(f"--schema={_pattern(schema)}")
    )
    raise RestoreFailed(
        f"{path} holds several schemas ({named}), but a restore replaces the target's "
        f'schema alone ("{schema}"): restore a dump of that schema only ({extract}); '
        "nothing was changed"
    )


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
    try:
        out, err = await process.communicate()
    except BaseException:
        await to_the_end(end_process(process))  # cancelled: `pg_restore --list` goes too
        raise
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
    """The file's bytes, without those in the ranges `skip` (statements left out)."""
    handle = await asyncio.to_thread(path.open, "rb")
    position = 0
    ranges = list(skip)
    try:
        while True:
            if ranges and position == ranges[0][0]:
                position = ranges.pop(0)[1]
                await asyncio.to_thread(handle.seek, position)
                continue
            size = min(CHUNK, ranges[0][0] - position) if ranges else CHUNK
            chunk = await asyncio.to_thread(handle.read, size)
            if not chunk:
                break
            yield chunk
            position += len(chunk)
    finally:
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
    called if it was (before the restore proper starts).
    """
    target = config.redacted()
    nothing_restored = f"nothing was restored; {target} is as it was"
    try:
        if await asyncio.to_thread(_path_kind, file) == "missing":
            raise RestoreFailed(f"no such file: {file}")
        tools = await find_tools(config, ("pg_restore", "psql"), prefer_wheel=embedded)
        backup = await inspect_backup(file, config.schema, tools["pg_restore"])
        refuse_what_a_restore_cannot_hold(backup, config.schema)
        # Only now: a restore refused for its file leaves no new, empty database behind.
        if create_database and await ensure_database_exists(config) and on_database_created:
            on_database_created()
        if not force:
            holding = await tables_with_rows(config)
            if holding:
                raise TargetNotEmpty(
                    f"{target} is not empty (rows in {', '.join(holding)}); "
                    "pass --force to replace everything in it with the backup"
                )
    except asyncio.CancelledError:
        raise Interrupted(nothing_restored) from None

    run = _RestoreRun(transaction=RestoreTransaction(), psql_errors=[], source_errors=[])
    try:
        await _stream_restore(config, backup, tools, run, force=force, show_progress=show_progress)
    except asyncio.CancelledError:
        raise await _interrupted_restore(config, file, run.transaction) from None

    committed = run.psql_code == 0 and run.complete
    if not committed and run.commit_sent:
        # psql failed after the COMMIT was sent: the COMMIT failed, or psql was stopped
        # (Ctrl-C reaches it too) once it had run it. The server knows which.
        try:
            committed = await transaction_committed(config, run.transaction)
        except asyncio.CancelledError:
            raise await _interrupted_restore(config, file, run.transaction) from None
        except Exception as exc:
            reason = first_error(run.psql_errors, f"psql exit code {run.psql_code}")
            raise RestoreFailed(
                f"restoring {file} failed as it committed ({reason}), and the server could "
                f"not say whether it did ({first_line(exc)}): check {target}"
            ) from None
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


async def _interrupted_restore(
    config: DatabaseConfig, file: Path, transaction: RestoreTransaction
) -> Interrupted:
    """What an interrupted restore left, once psql is gone: asked of the server."""
    target = config.redacted()
    try:
        committed = await to_the_end(transaction_committed(config, transaction))
    except Exception as exc:
        return Interrupted(
            f"could not tell whether the restore committed ({first_line(exc)}); check {target}"
        )
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
                    run.commit_sent = True
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
