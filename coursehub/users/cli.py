"""`coursehub users …`: account management from the command line."""

from __future__ import annotations

import secrets
import sys

import typer
from pydantic import ValidationError

from coursehub.core.console import console, fail, run, target_database
from coursehub.core.database import command_transaction
from coursehub.core.dburl import DatabaseConfig
from coursehub.users import service
from coursehub.users.schemas import UserCreate

users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)


def _validated(email: str, username: str, password: str) -> UserCreate:
    try:
        return UserCreate(email=email, username=username, password=password)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid account details: {problems}")


async def _create_admin(config: DatabaseConfig, data: UserCreate, promote: bool) -> bool:
    async with command_transaction(config) as session:
        _, created = await service.create_admin(session, data, promote=promote)
    return created


@users_app.command("create-admin")
def create_admin_command(
    email: str = typer.Option(..., help="The admin's email."),
    username: str = typer.Option(..., help="3–30 of a-z, 0-9, _ . -"),
    password: str | None = typer.Option(
        None,
        envvar="ADMIN_PASSWORD",
        help="8–128 characters. Asked for at a terminal if left out; "
        "without a terminal, one is generated and printed once.",
    ),
    promote: bool = typer.Option(
        False, "--promote", help="If an account with this email exists, make it an admin."
    ),
) -> None:
    """Create an admin account (or, with --promote, make an existing one an admin)."""
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            password = secrets.token_urlsafe(18)
            generated = True
    data = _validated(email, username, password)
    resolved = target_database()
    created = run(_create_admin(resolved.config, data, promote))
    if created:
        console.print(f"Created admin {data.username} <{data.email}>.")
        if generated:
            console.print(f"Generated password (shown once): {password}")
    else:
        console.print(f"{data.email} is now an admin (existing account; password unchanged).")
