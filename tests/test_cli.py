"""The CLI fails with one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from coursehub.core.dburl import DatabaseConfig
from coursehub.db.migrations import head_revision
from tests.db.helpers import bound_by_permissions


def run_cli(*args: str, database_url: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return run_cli_in(None, *args, database_url=database_url, **variables)


def run_cli_in(
    directory: Path | None,
    *args: str,
    database_url: str,
    prefix: Sequence[str] = (),
    **variables: str,
) -> subprocess.CompletedProcess[str]:
    """`run_cli` in `directory` (where `.env` is read from), after the command `prefix`."""
    env = {**os.environ, "DATABASE_URL": database_url, **variables}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "coursehub", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres@127.0.0.1:1/store", "cannot reach PostgreSQL"),
        ("postgresql://postgres@no-such-host.invalid:5432/store", "cannot reach PostgreSQL"),
        ("postgresql://postgres@127.0.0.1:5432/store?colour=blue", "unknown parameter 'colour'"),
        ("mysql://root@127.0.0.1/store", "must start with postgresql://"),
        # A bracket left open: urllib's ValueError was a traceback.
        ("postgresql://postgres@[::1:5432/store", "not a valid URL"),
        # asyncpg refuses its own configuration before connecting (an InterfaceError, which
        # was a traceback): verify-full with no root certificate ($HOME below has none).
        ("postgresql://postgres@127.0.0.1:5432/store?sslmode=verify-full", "root certificate"),
    ],
)
def test_a_wrong_database_url_is_one_line(url: str, says: str, tmp_path: Path) -> None:
    result = run_cli("db", "status", database_url=url, HOME=str(tmp_path))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(error_lines(result)) == 1
    assert says in error_lines(result)[0]


def test_wrong_password_and_missing_database_say_which(server: DatabaseConfig) -> None:
    if server.is_socket:
        pytest.skip("the embedded server trusts every local user; no password to get wrong")
    wrong_user = DatabaseConfig(
        user="nobody_here", password="x", host=server.host, port=server.port, database="postgres"
    )
    missing = server.with_database("coursehub_no_such_database")

    bad_password = run_cli("db", "status", database_url=wrong_user.to_url())
    no_database = run_cli("db", "status", database_url=missing.to_url())

    assert bad_password.returncode == 1 and "wrong user or password" in bad_password.stderr
    assert no_database.returncode == 1 and "does not exist" in no_database.stderr
    assert "Traceback" not in bad_password.stderr + no_database.stderr


def test_every_command_names_its_database_without_the_password(db_config: DatabaseConfig) -> None:
    result = run_cli("db", "status", database_url=db_config.to_url())

    assert result.returncode == 0, result.stderr
    assert f"Using database {db_config.redacted()}" in result.stderr
    if db_config.password:
        assert db_config.password not in result.stderr + result.stdout


def test_reset_refuses_without_force_or_terminal(db_config: DatabaseConfig) -> None:
    result = run_cli("db", "reset", database_url=db_config.to_url())

    assert result.returncode == 1
    assert "--force" in error_lines(result)[0]


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"COURSEHUB_ACCESS_TOKEN_MINUTES": "abc"}, "COURSEHUB_ACCESS_TOKEN_MINUTES"),
        ({"COURSEHUB_ENVIRONMENT": "prod"}, "COURSEHUB_ENVIRONMENT"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    db_config: DatabaseConfig, variables: dict[str, str], says: str
) -> None:
    result = run_cli("db", "status", database_url=db_config.to_url(), **variables)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(error_lines(result)) == 1 and says in error_lines(result)[0]


@pytest.mark.parametrize(
    "content",
    [b"DATABASE_URL=\xff\xfe\n", "DATABASE_URL=postgresql://x@db/store\n".encode("utf-16")],
    ids=["latin-1", "utf-16"],
)
def test_a_dotenv_that_is_not_utf8_is_one_line_naming_it(
    db_config: DatabaseConfig, tmp_path: Path, content: bytes
) -> None:
    """python-dotenv's UnicodeDecodeError was a traceback, on every command."""
    (tmp_path / ".env").write_bytes(content)

    result = run_cli_in(tmp_path, "db", "status", database_url=db_config.to_url())

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert line.startswith(f"error: cannot read {tmp_path / '.env'}: it is not UTF-8 text")


def test_a_dotenv_that_cannot_be_read_is_one_line_naming_it(
    db_config: DatabaseConfig, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("NODE_ENV=development\n")
    env_file.chmod(0o000)

    result = run_cli_in(
        tmp_path, "db", "status", database_url=db_config.to_url(), prefix=bound_by_permissions()
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [f"error: cannot read {env_file}: Permission denied"]


def test_serve_refuses_production_without_real_secrets_in_one_line(
    db_config: DatabaseConfig,
) -> None:
    result = run_cli(
        "serve",
        "--port",
        "1",
        database_url=db_config.to_url(),
        COURSEHUB_ENVIRONMENT="production",
        COURSEHUB_SECRET_KEY="short",
        COURSEHUB_PAYMENT_WEBHOOK_SECRET="",
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert "COURSEHUB_SECRET_KEY" in line and "COURSEHUB_PAYMENT_WEBHOOK_SECRET" in line


def test_a_downgrade_to_something_that_is_no_revision_is_one_line(
    db_config: DatabaseConfig,
) -> None:
    """Alembic fails on its branch syntax (`@`) with a bare assertion: a traceback."""
    result = run_cli("db", "downgrade", "@", database_url=db_config.to_url())

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [
        f"error: cannot downgrade to '@' from {head_revision()}: not a revision (base, -N, "
        "REV, REV-N or REV+N); nothing was changed"
    ]


def test_serve_refuses_a_port_out_of_range() -> None:
    """Uvicorn took 99999 modulo 65536 (it listened on 34463 while announcing 99999)."""
    result = run_cli("serve", "--port", "99999", database_url="postgresql://unused@127.0.0.1/x")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value for '--port'" in result.stderr


def test_orders_expire_takes_minutes_up_to_a_year(db_config: DatabaseConfig) -> None:
    """As COURSEHUB_PENDING_ORDER_TTL_MINUTES: more overflowed the date arithmetic (an
    OverflowError traceback)."""
    too_long = run_cli(
        "orders", "expire", "--minutes", "3000000000", database_url=db_config.to_url()
    )
    a_year = run_cli("orders", "expire", "--minutes", "525600", database_url=db_config.to_url())

    assert too_long.returncode == 2 and "Traceback" not in too_long.stderr
    assert "Invalid value for '--minutes'" in too_long.stderr
    assert a_year.returncode == 0, a_year.stderr
    assert "Expired 0 pending order(s)" in a_year.stdout


def test_db_stop_needs_no_secrets(tmp_path: Path) -> None:
    """Stopping the embedded server needs only COURSEHUB_HOME: a broken secrets file there
    (which every other command refuses in one line) must not keep it running."""
    (tmp_path / "secrets.json").write_text("[1, 2]")

    stopped = run_cli("db", "stop", database_url="", COURSEHUB_HOME=str(tmp_path))
    status = run_cli("db", "status", database_url="", COURSEHUB_HOME=str(tmp_path))

    assert stopped.returncode == 0, stopped.stderr
    assert "The embedded PostgreSQL is not running." in stopped.stderr
    assert status.returncode == 1 and "secrets" in status.stderr


# A Ctrl-C while Python imports the CLI (FastAPI, SQLAlchemy, every model: about a second),
# simulated by an import hook: before `coursehub.cli.main` exists to catch it.
_CTRL_C_DURING_IMPORT = """
import sys

class CtrlCOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "coursehub.cli":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlCOnImport())
from coursehub.entry_point import main
main()
"""


def test_a_ctrl_c_while_the_cli_is_imported_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CTRL_C_DURING_IMPORT],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 130
    assert result.stderr == "interrupted\n"


def test_the_console_script_is_the_entry_point_that_imports_nothing() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["coursehub"] == "coursehub.entry_point:main"
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, coursehub.entry_point; print(sorted(m for m in sys.modules "
            "if m.startswith(('coursehub.', 'sqlalchemy', 'fastapi', 'typer'))))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert imported.stdout.strip() == "['coursehub.entry_point']"
