"""`coursehub db backup` / `restore` on files they cannot use: a directory that cannot be
entered or written, a named pipe, a device, a file that fails to read. Each is one line
naming the path and saying what failed on it, never a traceback, a hang, or "database
error"."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from coursehub.core.dburl import DatabaseConfig
from coursehub.db.dump_inspection import RestoreFailed
from coursehub.db.restore import restore_database
from tests.db.helpers import run_cli

pytestmark = pytest.mark.committing


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result)
    assert "database error" not in line
    return line


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A directory no one but root (with its overrides) can enter, list or write."""
    directory = tmp_path / "locked"
    directory.mkdir()
    directory.chmod(0o000)
    yield directory
    directory.chmod(0o700)  # for tmp_path's clean-up


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory that can be entered and read, not written; holding the partial file an
    earlier backup left, itself read-only."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    leftover = directory / ".store.dump.partial"
    leftover.write_bytes(b"")
    leftover.chmod(0o400)
    directory.chmod(0o500)
    yield directory
    directory.chmod(0o700)


# --- restore -----------------------------------------------------------------------------


def test_a_restore_file_in_a_directory_that_cannot_be_entered_is_one_line(
    db_config: DatabaseConfig, locked: Path
) -> None:
    """Path.exists() raises PermissionError there (Python 3.11): it was a traceback."""
    file = locked / "store.dump"

    result = run_cli("db", "restore", str(file), config=db_config, bound_by_file_permissions=True)

    line = assert_one_line(result)
    assert line == f"error: cannot read {file}: Permission denied; nothing was changed"


def test_a_named_pipe_is_refused_before_it_is_opened(
    db_config: DatabaseConfig, tmp_path: Path
) -> None:
    """Opening a pipe blocks until a writer comes, in a thread no signal stops: the command
    said "interrupted" to Ctrl-C and SIGTERM and never exited (the timeout here)."""
    fifo = tmp_path / "store.dump"
    os.mkfifo(fifo)

    result = run_cli("db", "restore", str(fifo), config=db_config, timeout=60)

    line = assert_one_line(result)
    assert line.startswith(f"error: {fifo} is neither a regular file nor a directory")
    assert line.endswith("nothing was changed")


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    yield path
    listening.close()


@pytest.mark.parametrize("what", ["socket", "device"])
async def test_a_restore_of_something_that_is_no_file_is_refused_before_anything(
    scratch_db: DatabaseConfig, unix_socket: Path, what: str
) -> None:
    """restore_database itself refuses (not only the CLI): a socket failed with "database
    error: [Errno 6] No such device or address", /dev/zero was fed to pg_restore."""
    path = unix_socket if what == "socket" else Path("/dev/zero")

    with pytest.raises(RestoreFailed) as refused:
        await restore_database(scratch_db, path, force=False, show_progress=False)

    assert str(refused.value).startswith(f"{path} is neither a regular file nor a directory")


async def test_a_restore_file_that_fails_to_read_names_it(scratch_db: DatabaseConfig) -> None:
    """/proc/self/mem is a regular file whose read at offset 0 fails with EIO: it was
    `database error: [Errno 5] Input/output error`, naming no file."""
    file = Path("/proc/self/mem")

    with pytest.raises(RestoreFailed) as failed:
        await restore_database(scratch_db, file, force=False, show_progress=False)
    result = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=scratch_db)

    assert str(failed.value).startswith(f"cannot read {file}: ")
    assert str(failed.value).endswith("; nothing was changed")
    assert assert_one_line(result).startswith(f"error: cannot read {file}: ")


# --- backup ------------------------------------------------------------------------------


def test_a_backup_into_a_directory_that_cannot_be_entered_names_the_file(
    db_config: DatabaseConfig, locked: Path
) -> None:
    """Path.is_dir() raises PermissionError there: it was `database error: [Errno 13]`."""
    file = locked / "store.dump"

    result = run_cli("db", "backup", str(file), config=db_config, bound_by_file_permissions=True)

    assert assert_one_line(result) == f"error: cannot write {file}: Permission denied"


def test_a_failed_clean_up_does_not_replace_why_the_backup_failed(
    db_config: DatabaseConfig, read_only: Path
) -> None:
    """The partial file cannot be written (nor the directory); removing it then fails too,
    and that error took the place of the first (`database error: … Permission denied`)."""
    file = read_only / "store.dump"

    result = run_cli("db", "backup", str(file), config=db_config, bound_by_file_permissions=True)

    partial = read_only / ".store.dump.partial"
    assert assert_one_line(result) == f"error: cannot write {partial}: Permission denied"
    assert not file.exists()
