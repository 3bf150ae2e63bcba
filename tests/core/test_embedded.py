"""The embedded PostgreSQL: reused across restarts, recovered after a crash, never
mistaking an unrelated process for itself, at home in a path with spaces."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from coursehub.core.dburl import parse_database_url
from coursehub.core.embedded import (
    data_directory,
    start_embedded_server,
    stop_embedded_server,
)
from coursehub.core.errors import ConfigurationError

START = (
    "import sys; from pathlib import Path; "
    "from coursehub.core.embedded import start_embedded_server; "
    "print(start_embedded_server(Path(sys.argv[1])).with_database('postgres').to_url())"
)

# A harmless process that dies of SIGINT, PostgreSQL's fast shutdown (even where the test
# runs with SIGINT ignored, which a child would inherit).
BYSTANDER = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(60)"


def start_in_new_process(home: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", START, str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


async def answers(url: str) -> bool:
    connection = await asyncpg.connect(**parse_database_url(url).asyncpg_connect_kwargs())
    try:
        return bool(await connection.fetchval("SELECT 1"))
    finally:
        await connection.close()


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A short path: the server's Unix socket lives in its data directory.
    path = tmp_path_factory.mktemp("home")
    yield path
    stop_embedded_server(path)


async def test_server_is_reused_and_survives_a_crash(home: Path) -> None:
    first = start_in_new_process(home)
    pid_file = data_directory(home) / "postmaster.pid"
    postmaster = int(pid_file.read_text().splitlines()[0])
    reused = start_in_new_process(home)

    os.kill(postmaster, signal.SIGKILL)  # a crash: postmaster.pid is left behind
    for _ in range(100):
        try:
            os.kill(postmaster, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert pid_file.exists()
    recovered = start_in_new_process(home)

    assert reused == first
    assert await answers(recovered)
    assert int(pid_file.read_text().splitlines()[0]) != postmaster


async def test_a_stale_pid_file_naming_another_process_is_not_the_server(home: Path) -> None:
    """After a crash the system can give the dead postmaster's pid to another process:
    `db stop` must not signal it (it did, and said it had stopped the server), and a
    start must not take it for the server (it did, and handed out a dead socket)."""
    start_in_new_process(home)
    pid_file = data_directory(home) / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    assert stop_embedded_server(home)
    bystander = subprocess.Popen([sys.executable, "-c", BYSTANDER])
    try:
        stale = "\n".join([str(bystander.pid), *lines[1:]]) + "\n"
        pid_file.write_text(stale)

        # (Signalled, our child would linger as a zombie: no long wait for it to go.)
        stopped = stop_embedded_server(home, timeout=2)
        time.sleep(0.2)  # a signal it was sent has landed by now
        assert bystander.poll() is None
        pid_file.write_text(stale)  # as a start finds it, with no `db stop` before
        recovered = start_in_new_process(home)

        assert not stopped
        assert await answers(recovered)
        assert int(pid_file.read_text().splitlines()[0]) != bystander.pid
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@pytest.fixture
def home_with_spaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("my projects") / "course hub"
    yield path
    stop_embedded_server(path)


async def test_a_home_whose_path_has_spaces_works(home_with_spaces: Path) -> None:
    """pgserver hands PostgreSQL its socket directory unquoted through the shell; the
    data directory was that directory, so a space in it stopped the server starting."""
    url = start_in_new_process(home_with_spaces)

    assert await answers(url)
    assert " " not in parse_database_url(url).to_url()


def test_a_home_that_is_not_a_directory_is_one_configuration_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("")

    with pytest.raises(
        ConfigurationError, match=re.escape(f"{home} is not a directory") + ".*COURSEHUB_HOME"
    ):
        start_embedded_server(home)


def test_a_home_the_shell_would_expand_is_refused_in_one_line(tmp_path: Path) -> None:
    """pg_ctl hands the data directory to the shell in double quotes, where $ still
    expands: refused before anything is started."""
    home = tmp_path / "price$HOME"

    with pytest.raises(ConfigurationError, match=r"expands \$.*COURSEHUB_HOME"):
        start_embedded_server(home)
    assert not home.exists()


async def test_a_stopped_embedded_server_is_not_blamed_on_database_url(home: Path) -> None:
    """It said "are host and port in DATABASE_URL right?" to someone who set no URL."""
    from coursehub.core.database import check_connection

    config = start_embedded_server(home)
    stop_embedded_server(home)

    with pytest.raises(ConfigurationError) as refused:
        await check_connection(config)

    message = str(refused.value)
    assert config.embedded
    assert "embedded PostgreSQL" in message and "run the command again" in message
    assert "DATABASE_URL" not in message
