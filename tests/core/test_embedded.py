"""The embedded PostgreSQL: reused across restarts, recovered after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from coursehub.core.dburl import parse_database_url
from coursehub.core.embedded import data_directory, stop_embedded_server

START = (
    "import sys; from pathlib import Path; "
    "from coursehub.core.embedded import start_embedded_server; "
    "print(start_embedded_server(Path(sys.argv[1])).with_database('postgres').to_url())"
)


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
