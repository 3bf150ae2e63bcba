"""`coursehub users create-admin`, run as a real process against the test database."""

from __future__ import annotations

import subprocess

from sqlalchemy import select

from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.security import verify_password
from coursehub.models import Role, User
from tests.db.helpers import run_cli
from tests.factories import make_user


def create_admin(db_config: DatabaseConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("users", "create-admin", *args, config=db_config, timeout=120)


async def stored(database: Database, email: str) -> User | None:
    async with database.transaction() as session:
        return await session.scalar(select(User).where(User.email == email))


async def test_create_admin_with_a_password(
    committed_db: Database, db_config: DatabaseConfig
) -> None:
    result = create_admin(
        db_config, "--email", "Root@Example.com", "--username", "Root", "--password", "a-long-one"
    )

    assert result.returncode == 0, result.stderr
    assert "Created admin root <root@example.com>" in result.stdout
    admin = await stored(committed_db, "root@example.com")
    assert admin is not None and admin.role is Role.admin and admin.username == "root"
    assert verify_password("a-long-one", admin.password)[0]


async def test_without_a_terminal_a_password_is_generated_and_shown_once(
    committed_db: Database, db_config: DatabaseConfig
) -> None:
    result = create_admin(db_config, "--email", "ops@example.com", "--username", "ops")

    assert result.returncode == 0, result.stderr
    password = result.stdout.split("Generated password (shown once): ")[1].split()[0]
    admin = await stored(committed_db, "ops@example.com")
    assert admin is not None and verify_password(password, admin.password)[0]


async def test_a_taken_email_fails_in_one_line_unless_promoting(
    committed_db: Database, db_config: DatabaseConfig
) -> None:
    async with committed_db.transaction() as session:
        await make_user(session, email="member@example.com", username="member")

    taken = create_admin(
        db_config, "--email", "member@example.com", "--username", "other", "--password", "x" * 12
    )
    promoted = create_admin(
        db_config,
        "--email",
        "member@example.com",
        "--username",
        "other",
        "--password",
        "x" * 12,
        "--promote",
    )

    assert taken.returncode == 1 and "Traceback" not in taken.stderr
    assert "error:" in taken.stderr and "email already exists" in taken.stderr
    assert promoted.returncode == 0, promoted.stderr
    member = await stored(committed_db, "member@example.com")
    assert member is not None and member.role is Role.admin and member.username == "member"


async def test_invalid_details_are_refused_before_touching_the_database(
    committed_db: Database, db_config: DatabaseConfig
) -> None:
    result = create_admin(db_config, "--email", "nope", "--username", "x", "--password", "short")

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "email" in result.stderr and "username" in result.stderr and "password" in result.stderr
    assert await stored(committed_db, "nope") is None
