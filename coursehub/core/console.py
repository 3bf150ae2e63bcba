"""What every CLI command shares: the consoles, the database it targets, and turning
any failure into one line on stderr with a non-zero exit."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import asyncpg
import sqlalchemy.exc
from alembic.util.exc import CommandError as AlembicCommandError
from rich.console import Console
from rich.markup import escape

from coursehub.core.database import (
    CONNECT_ERRORS,
    ResolvedDatabase,
    check_connection,
    connect_error_message,
    resolve_database,
)
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import ConfigurationError, StoreError, first_line
from coursehub.core.settings import get_settings

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class CommandFailed(Exception):
    """Raised inside a command to stop with a one-line message and exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int = 1) -> NoReturn:
    raise CommandFailed(message, exit_code)


# What a command's database work can fail with besides a StoreError: the server
# unreachable or refusing, a statement failing.
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlalchemy.exc.DBAPIError,
)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Store and database errors raised inside become CommandFailed: one line on stderr
    and a non-zero exit, never a traceback."""
    try:
        yield
    except StoreError as exc:
        raise CommandFailed(str(exc)) from exc
    except AlembicCommandError as exc:
        # Alembic's commands reach us as MigrationError (db/migrations.py `_run_alembic`);
        # this is for its other calls that can refuse (several heads, an unknown revision).
        raise CommandFailed(first_line(exc)) from exc
    except OSError as exc:
        # An error naming a file is the file system's (a backup's directory that cannot be
        # entered, a disk failing), not the database's: "database error" sent the operator
        # to the wrong place. A connection's errors name no file.
        if exc.filename is None:
            raise CommandFailed(f"database error: {first_line(exc)}") from exc
        raise CommandFailed(_file_system_error(exc)) from exc
    except DATABASE_ERRORS as exc:
        raise CommandFailed(f"database error: {first_line(exc)}") from exc


def _file_system_error(exc: OSError) -> str:
    """One line saying which path failed and how: `[Errno 13] Permission denied: 'x'` as
    `file-system error on x: Permission denied`."""
    paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"file-system error on {paths}: {exc.strerror or first_line(exc)}"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, its failures as one line (`one_line_errors`)."""
    with one_line_errors():
        return asyncio.run(coroutine)


def target_database(
    *, quiet: bool = False, create: bool = False, created_later: bool = False
) -> ResolvedDatabase:
    """The database this command works on, announced (password hidden) and checked.

    `create`: make the database if it does not exist yet (as `prisma migrate` does).
    `created_later`: the command creates it itself, once it knows it will not fail before
    using it (a restore, once its file has passed its checks): only the server is checked
    here, and the database may be missing, embedded or not.
    """
    with one_line_errors():
        resolved = resolve_database(get_settings())
    if not quiet:
        err_console.print(f"[dim]Using database {resolved.describe()}[/dim]")
    if created_later:
        run(_check_server(resolved.config))
    elif resolved.embedded or create:
        from coursehub.core.database import ensure_database_exists

        if run(ensure_database_exists(resolved.config)) and not quiet:
            announce_created_database(resolved.config)
    else:
        run(check_connection(resolved.config))
    return resolved


def announce_created_database(config: DatabaseConfig) -> None:
    err_console.print(f"Created database {config.database!r}.")


async def _check_server(config: DatabaseConfig) -> None:
    """Connect to the database or, while it does not exist, to the server's maintenance
    database (where it will be created from); ConfigurationError with a one-line reason if
    the server cannot be reached or refuses."""
    try:
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    except asyncpg.InvalidCatalogNameError:
        await check_connection(config.with_database("postgres"))
        return
    except CONNECT_ERRORS as exc:
        raise ConfigurationError(await connect_error_message(config, exc)) from exc
    await connection.close()


def report_failure(exc: CommandFailed) -> NoReturn:
    # Escaped: the message often echoes the operator's input (an order number, a URL), and
    # `[…]` in it would be taken for rich's markup (garbled, or a MarkupError traceback).
    message = escape(str(exc).replace("\n", " "))
    err_console.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)
    sys.exit(exc.exit_code)
