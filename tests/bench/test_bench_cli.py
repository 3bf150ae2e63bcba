"""`coursehub bench --json FILE` with a FILE that cannot be written: refused in one line
before the run (the server below cannot even be reached), and a write that fails after
the run is one line too, after the printed table."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coursehub.bench import cli
from coursehub.core.console import CommandFailed
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.settings import get_settings

# Nothing listens on port 1: a command that got as far as the database fails on it.
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coursehub", "bench", "--smoke", *args],
        env={**os.environ, "DATABASE_URL": UNREACHABLE},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("where", "says"),
    [
        (lambda tmp: tmp / "missing" / "report.json", "does not exist"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: tmp / "a-file" / "report.json", "is not a directory"),
    ],
    ids=["missing directory", "a directory", "under a file"],
)
def test_an_unwritable_report_path_is_refused_before_the_run(
    tmp_path: Path, where: Any, says: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    json_file = where(tmp_path)

    result = bench("--json", str(json_file))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"--json {json_file}" in errors[0] and says in errors[0]
    # Refused before any database work: not a word about the server it cannot reach.
    assert "PostgreSQL" not in result.stderr and "Using the server" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_directory_without_write_permission_is_refused_before_the_run(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)

    result = bench("--json", str(locked / "report.json"))

    assert result.returncode == 1
    assert "permission denied" in result.stderr and "PostgreSQL" not in result.stderr


@pytest.fixture
def settings_of(server: DatabaseConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's settings pointed at the test server's maintenance database."""
    monkeypatch.setenv("DATABASE_URL", server.with_database("postgres").to_url())
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


def test_a_report_that_cannot_be_written_after_the_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_of: None
) -> None:
    directory = tmp_path / "reports"
    directory.mkdir()
    json_file = directory / "report.json"
    report = {
        "machine": {"nproc": 2, "postgresql": "15", "python": "3"},
        "options": {"seconds": 0.5},
        "total_seconds": 1.0,
        "operations": [],
        "coupon_contention": None,
        "http": None,
    }

    def run_suite(*args: Any, **kwargs: Any) -> dict[str, Any]:
        # The run passed the check at its start; its directory went away during it.
        directory.rmdir()
        return report

    monkeypatch.setattr(cli, "run_suite", run_suite)

    result = CliRunner().invoke(cli.bench_app, ["--json", str(json_file), "--no-http"])

    assert isinstance(result.exception, CommandFailed), result.exception
    assert str(result.exception).startswith(f"could not write the report to {json_file}")
    assert "\n" not in str(result.exception)
    assert "Ours (store code) against the floor" in result.stdout  # the table was shown
