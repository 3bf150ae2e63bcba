"""`coursehub db …`: migrate, inspect, seed, back up and restore the database."""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from coursehub.core.console import (
    announce_created_database,
    console,
    err_console,
    fail,
    one_line_errors,
    run,
    target_database,
)
from coursehub.core.database import resolve_database
from coursehub.core.dburl import parse_database_url
from coursehub.core.settings import get_settings
from coursehub.db import migrations

db_app = typer.Typer(help="Migrate, seed, back up and restore the database.", no_args_is_help=True)

T = TypeVar("T")


def _require_direct_connection() -> None:
    """Refuse a DATABASE_URL through PgBouncer (`migrations.require_direct_connection`)
    before a command creates or drops anything."""
    with one_line_errors():
        url = get_settings().database_url
        if url:
            migrations.require_direct_connection(parse_database_url(url))


@db_app.command("migrate")
def migrate_command() -> None:
    """Apply pending migrations (Prisma's `migrate deploy`). Safe to run concurrently."""
    _require_direct_connection()
    resolved = target_database(create=True)
    result = run(migrations.migrate(resolved.config))
    if result.adopted:
        console.print(
            "Adopted a database made by the Node/Prisma app: recorded it at "
            f"{migrations.BASELINE_REVISION}; no row was changed."
        )
    if result.applied:
        console.print("Applied: " + ", ".join(result.applied))
    else:
        console.print(f"Already up to date at {result.after}.")


@db_app.command("status")
def status_command() -> None:
    """Applied and pending migrations, and whether the models drift from the database."""
    resolved = target_database()
    state = run(migrations.status(resolved.config))
    console.print(f"Current revision: {state.current or '(none)'}   head: {state.head}")
    for revision in state.applied:
        console.print(f"  [green]applied[/green]  {revision}")
    for revision in state.pending:
        console.print(f"  [yellow]pending[/yellow]  {revision}")
    if state.pending:
        console.print("Run `coursehub db migrate` to apply the pending migrations.")
    elif state.drift:
        console.print("[yellow]The models differ from the database:[/yellow]")
        for change in state.drift:
            console.print(f"  {change}")
        console.print('Run `coursehub db makemigration -m "…"` to record them.')
    else:
        console.print("No drift: the database matches the models.")
    if state.pending or state.drift:
        raise typer.Exit(1)


@db_app.command("makemigration")
def makemigration_command(
    message: str = typer.Option(..., "-m", "--message", help="What the migration does."),
) -> None:
    """Autogenerate a migration from model changes (Prisma's `migrate dev`), enums included."""
    resolved = target_database()
    path = run(migrations.make_migration(resolved.config, message))
    if path is None:
        console.print("No changes: the models match the migrated database.")
    else:
        console.print(f"Wrote {path}; review it, then run `coursehub db migrate`.")


# "-1" must reach REVISION as a value, not be taken for an unknown option.
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def downgrade_command(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base."),
    force: bool = typer.Option(
        False, "--force", help="Allow undoing the baseline, which drops every table and row."
    ),
) -> None:
    """Undo migrations down to REVISION."""
    _require_direct_connection()
    resolved = target_database()
    result = run(migrations.downgrade(resolved.config, revision, undo_baseline=force))
    if result.undone:
        console.print(f"Downgraded to {result.after or 'base'}; undid: " + ", ".join(result.undone))
    else:
        console.print(f"Nothing to undo: already at {result.before or 'base'}.")


@db_app.command("reset")
def reset_command(
    force: bool = typer.Option(False, "--force", help="Do not ask for confirmation."),
    seed: bool = typer.Option(True, help="Seed the demo data afterwards."),
) -> None:
    """Drop everything in the database, migrate, and seed. Asks first unless --force."""
    _require_direct_connection()
    if seed:
        from coursehub.db.seed import admin_settings

        # Bad ADMIN_EMAIL / ADMIN_PASSWORD stop the reset before anything is dropped.
        with one_line_errors():
            admin_settings()
    # Confirmed before the database is created: a refused reset creates nothing.
    if not force:
        if not sys.stdin.isatty():
            fail("db reset destroys every row; pass --force to run it without a terminal")
        with one_line_errors():
            config = resolve_database(get_settings()).config
        answer = typer.prompt(
            f"This deletes every table and row in {config.redacted()}. "
            f"Type the database name ({config.database}) to go on"
        )
        if answer.strip() != config.database:
            fail("not confirmed; nothing was changed")
    resolved = target_database(create=True)
    run(migrations.drop_everything(resolved.config))
    result = run(migrations.migrate(resolved.config))
    console.print("Dropped everything; applied: " + ", ".join(result.applied))
    if seed:
        from coursehub.db.seed import print_seed_report, seed_demo_data

        print_seed_report(run(seed_demo_data(resolved.config)))


@db_app.command("seed")
def seed_command(
    users: int = typer.Option(0, min=0, help="Bulk: this many extra users."),
    courses: int = typer.Option(0, min=0, help="Bulk: this many extra courses."),
    orders: int = typer.Option(
        0, min=0, help="Bulk: this many orders (with items, usages, enrollments)."
    ),
) -> None:
    """Seed the demo data (admin, courses, coupons); idempotent. With --users/--courses/--orders,
    also a large realistic dataset for benchmarks."""
    from coursehub.db.bulk import print_bulk_report
    from coursehub.db.seed import print_seed_report, seed_bulk_data, seed_demo_data

    resolved = target_database()
    print_seed_report(run(seed_demo_data(resolved.config)))
    if users or courses or orders:
        report = run(seed_bulk_data(resolved.config, users=users, courses=courses, orders=orders))
        print_bulk_report(report)


@db_app.command("backup")
def backup_command(
    file: Path = typer.Argument(
        None, help="Where to write (a file or a directory); default ./coursehub-<time>.dump"
    ),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="Plain SQL (restorable with `psql < FILE`) instead of pg_dump's custom format.",
    ),
) -> None:
    """Back up the database with pg_dump: a consistent snapshot, even while writes go on."""
    from coursehub.db.backup import backup_database

    resolved = target_database()
    result = _run_stoppable(
        backup_database(resolved.config, file, plain=plain, embedded=resolved.embedded)
    )
    err_console.print(f"[dim]with {result.pg_dump.describe()}[/dim]")
    console.print(f"Backed up to {result.path} ({_size(result.size)}).")


@db_app.command("restore")
def restore_command(
    file: Path = typer.Argument(
        ..., exists=False, help="A backup from `coursehub db backup` or pg_dump (any format)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a database that is not empty."),
) -> None:
    """Restore a backup into the database, all or nothing. Refuses a non-empty database
    without --force; a corrupt or truncated file leaves the database as it was."""
    from coursehub.db.dump_inspection import restorable_kind
    from coursehub.db.restore import restore_database

    # Missing, behind a directory that cannot be entered, or a named pipe (whose open would
    # block for ever): one line, before the database is even looked at.
    with one_line_errors():
        restorable_kind(file)
    if not os.access(file, os.R_OK):
        fail(f"cannot read {file}: permission denied")
    # A missing database is created by the restore, once the file has passed its checks:
    # a restore refused for its file creates nothing.
    resolved = target_database(created_later=True)
    result = _run_stoppable(
        restore_database(
            resolved.config,
            file,
            force=force,
            embedded=resolved.embedded,
            create_database=True,
            on_database_created=lambda: announce_created_database(resolved.config),
        )
    )
    console.print(
        f"Restored {result.path} into {resolved.config.redacted()} "
        f"({_size(result.bytes_streamed)} of SQL)."
    )
    if result.warning:
        err_console.print(f"[yellow]warning:[/yellow] {result.warning}")


def _run_stoppable(operation: Coroutine[Any, Any, T]) -> T:
    """`run` for a backup or restore, SIGINT and SIGTERM stopping it cleanly: its child
    processes ended, its partial file removed, and one line saying what it left, with the
    exit code of the signal (130, 143)."""
    from coursehub.db.tool_processes import Interrupted, cancelled_by_signals

    try:
        return run(cancelled_by_signals(operation))
    except Interrupted as exc:
        name = exc.signal.name if exc.signal is not None else "cancelled"
        err_console.print(f"interrupted ({name}): {exc}", soft_wrap=True)
        raise typer.Exit(128 + (exc.signal or 2)) from None


def _size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@db_app.command("stop")
def stop_command() -> None:
    """Stop the embedded PostgreSQL server (it otherwise keeps running between commands)."""
    from coursehub.core.embedded import stop_embedded_server
    from coursehub.core.settings import read_settings

    if stop_embedded_server(Path(read_settings().home)):
        err_console.print("Stopped the embedded PostgreSQL.")
    else:
        err_console.print("The embedded PostgreSQL is not running.")
