"""core/console.py: what a CLI command's failures become (one line, never a traceback)."""

from __future__ import annotations

import asyncpg
import pytest
from alembic.util.exc import CommandError as AlembicCommandError

from coursehub.core.console import CommandFailed, one_line_errors
from coursehub.core.errors import ConfigurationError


@pytest.mark.parametrize(
    ("raised", "line"),
    [
        (ConfigurationError("DATABASE_URL is not a PostgreSQL URL"), "DATABASE_URL is not"),
        # Alembic's own refusals, from calls that are not commands (several heads, say).
        (
            AlembicCommandError(
                "Multiple heads are present for given argument 'head'; ...\nmore detail"
            ),
            "Multiple heads are present",
        ),
        (asyncpg.PostgresConnectionError("connection refused\nhint"), "database error: "),
        (OSError("[Errno 111] Connection refused"), "database error: [Errno 111]"),
        # A file-system error names its file: not the database's.
        (
            PermissionError(13, "Permission denied", "locked/store.dump"),
            "file-system error on locked/store.dump: Permission denied",
        ),
        (
            OSError(
                18, "Invalid cross-device link", ".store.dump.partial", None, "/mnt/store.dump"
            ),
            "file-system error on .store.dump.partial -> /mnt/store.dump: Invalid cross-device",
        ),
    ],
)
def test_store_database_and_alembic_errors_become_one_line(raised: Exception, line: str) -> None:
    with pytest.raises(CommandFailed) as failed, one_line_errors():
        raise raised
    message = str(failed.value)
    assert message.startswith(line) and "\n" not in message


def test_other_errors_are_bugs_and_go_on() -> None:
    with pytest.raises(KeyError), one_line_errors():
        raise KeyError("a bug")
