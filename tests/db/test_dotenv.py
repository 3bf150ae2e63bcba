"""DATABASE_URL is read from a `.env` file in the working directory, as Prisma reads it,
so an existing Prisma project's `.env` works unchanged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from coursehub.core.dburl import DatabaseConfig
from coursehub.core.embedded import stop_embedded_server
from tests.db.helpers import fetchval

pytestmark = pytest.mark.committing

# The test servers trust local connections, so any password gets in; it is there to be hidden.
DOTENV_PASSWORD = "pw-from-dotenv-7Qx"


async def test_database_url_comes_from_dotenv_in_the_working_directory(
    scratch_db: DatabaseConfig, tmp_path: Path
) -> None:
    config = replace(scratch_db, password=DOTENV_PASSWORD)
    # Written as Prisma's `.env` usually has it: quoted, among other variables.
    (tmp_path / ".env").write_text(
        f"# Environment variables declared in this file are loaded by Prisma\n"
        f'DATABASE_URL="{config.to_url()}"\n'
        f"NODE_ENV=development\n"
    )
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "COURSEHUB_DATABASE_URL", "COURSEHUB_HOME")
    }
    # Where the embedded server would keep its data if .env were not read.
    home = tmp_path / "home"
    environment["COURSEHUB_HOME"] = str(home)

    try:
        result = await _run(["db", "migrate"], cwd=tmp_path, env=environment)
    finally:
        # Had .env been missed, an embedded server would have started there; stop it.
        stop_embedded_server(home)

    assert result.returncode == 0, result.stderr
    assert f"Using database {config.redacted()} (DATABASE_URL)" in result.stderr, result.stderr
    assert ":***@" in config.redacted()
    assert DOTENV_PASSWORD not in result.stdout + result.stderr
    # It was the .env's database that got migrated.
    assert await fetchval(scratch_db, "SELECT count(*) FROM alembic_version") == 1
    assert not (home / "postgres").exists()  # no embedded server was started


async def _run(
    args: list[str], *, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "coursehub", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
