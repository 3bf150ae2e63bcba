"""What a pg_dump file holds, checked before a restore changes anything (db/restore.py).

An archive (custom, directory or tar format) is read by `pg_restore --list`, its table of
contents; a plain SQL file must end with pg_dump's closing line, and is read through. Both
give the schemas the dump's objects are in and whether it holds large objects, and the
restore is refused unless it holds the target's schema alone and none
(`refuse_what_a_restore_cannot_hold`). The dump's statements on the schema itself are
found here too, for the restore to leave out.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from coursehub.core.dburl import quoted_identifier
from coursehub.core.errors import StoreError
from coursehub.db.pgtools import Tool
from coursehub.db.tool_processes import end_process, file_size, first_error, to_the_end

ARCHIVE_MAGIC = b"PGDMP"
PLAIN_DUMP_END = "-- PostgreSQL database dump complete"
PLAIN_DUMP_START = "-- PostgreSQL database dump"


class RestoreFailed(StoreError):
    status = 500
    code = "restore_failed"
    title = "Restore failed"


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


def restorable_kind(path: Path) -> str:
    """What `path` is: "directory" (pg_dump's directory format) or "file" (a regular one,
    through any symlink). RestoreFailed, before anything opens it, naming the path, for what
    is missing, cannot be looked at (a directory on the way that cannot be entered), or is
    neither: a named pipe blocks its open until a writer comes, in a thread no signal can
    stop (Ctrl-C and SIGTERM never ended the command); a pipe or socket cannot be read
    twice, as the checks and then the restore read the file; a device holds no dump."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RestoreFailed(f"no such file: {path}") from None
    except OSError as exc:
        raise cannot_read(path, exc) from None
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    raise RestoreFailed(
        f"{path} is neither a regular file nor a directory (a named pipe, socket or device), "
        "which a restore cannot read: save the dump to a file first; nothing was changed"
    )


def cannot_read(path: Path, exc: OSError) -> RestoreFailed:
    """A file-system error on the dump (permission denied, an I/O error), naming it."""
    return RestoreFailed(f"cannot read {path}: {exc.strerror or exc}; nothing was changed")


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
    kind = await asyncio.to_thread(restorable_kind, path)
    try:
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
    except OSError as exc:  # an I/O error, say: about the file, not the database
        raise cannot_read(path, exc) from None
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
