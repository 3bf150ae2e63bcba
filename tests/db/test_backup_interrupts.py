"""`coursehub db backup` / `restore` stopped half-way, and what they refuse before starting.

Interrupted: SIGINT or SIGTERM to the coursehub process alone (not its process group, so
the tools get no signal of their own). A restore stopped while psql still worked left psql
running with the COMMIT queued in its input: it committed after the command had exited
130 without a word. SIGTERM killed a backup on the spot, leaving pg_dump running and its
`.partial` file behind."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from coursehub.core.database import drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.locks import MIGRATION_LOCK_KEY
from coursehub.db import backup as backup_module
from coursehub.db import restore as restore_module
from coursehub.db.backup import BackupFailed, backup_database
from coursehub.db.dump_inspection import RestoreFailed, inspect_backup
from coursehub.db.migrations import migrate
from coursehub.db.pgtools import find_tools, tool_version
from coursehub.db.restore import (
    RestoreTransaction,
    restore_database,
    transaction_committed,
)
from coursehub.db.seed import seed_demo_data
from tests.conftest import scratch_database_name
from tests.db.helpers import execute, fetchval, run_cli, table_checksums

pytestmark = pytest.mark.committing

# Long enough that nothing in a test can wait it out: what a test sees, the fix did.
SLEEP = 120


def start_cli(*args: str, config: DatabaseConfig) -> subprocess.Popen[str]:
    """`coursehub ARGS` in its own process, as `run_cli` runs it, without waiting for it."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("ADMIN_EMAIL", "ADMIN_PASSWORD")
    }
    environment["DATABASE_URL"] = config.to_url()
    return subprocess.Popen(
        [sys.executable, "-m", "coursehub", *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` (pg_dump, pg_restore, psql)."""
    found = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat_file.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_for(config: DatabaseConfig, query: str, *args: Any, timeout: float = 60) -> None:
    """Until `query` (on the server's `postgres` database) returns true."""
    deadline = time.monotonic() + timeout
    admin = config.with_database("postgres")
    while not await fetchval(admin, query, *args):
        assert time.monotonic() < deadline, f"timed out waiting for: {query}"
        await asyncio.sleep(0.05)


async def other_sessions(config: DatabaseConfig) -> list[str]:
    """The server sessions on `config`'s database, besides the one asking."""
    connection = await asyncpg.connect(**config.with_database("postgres").asyncpg_connect_kwargs())
    try:
        rows = await connection.fetch(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            config.database,
        )
    finally:
        await connection.close()
    return [row["application_name"] for row in rows]


async def stop(cli: subprocess.Popen[str], signum: signal.Signals) -> tuple[int, str, set[int]]:
    """Send `signum` to the CLI alone; its exit code, stderr and the children it had."""
    children = children_of(cli.pid)
    assert children, "the CLI runs no tool yet"
    cli.send_signal(signum)
    _, stderr = await asyncio.to_thread(cli.communicate, timeout=60)
    return cli.returncode, stderr, children


@pytest.fixture
async def store(scratch_db: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    await migrate(scratch_db)
    await seed_demo_data(scratch_db)
    yield scratch_db


@pytest.fixture
async def target_db(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A second store, with the demo data, to restore over (with --force)."""
    config = server.with_database(scratch_database_name("target"))
    await ensure_database_exists(config)
    await migrate(config)
    await seed_demo_data(config)
    yield config
    await drop_database(config)


def slow_to_restore(source: DatabaseConfig, where: str) -> str:
    """SQL making the store's schema slow to restore (SLEEP seconds) anywhere but in
    `source`: while its rows are loaded (a CHECK calling a sleeping function, with pg_restore
    still streaming), or at the very end, after every byte and the COMMIT were written to
    psql (a materialized view's refresh, as index builds on a big dump)."""
    sleep = f"CASE WHEN current_database() = '{source.database}' THEN 0 ELSE {SLEEP} END"
    if where == "data":
        return (
            "CREATE FUNCTION slow_check() RETURNS boolean LANGUAGE sql"
            f" AS $$ SELECT true FROM pg_sleep({sleep}) $$;"
            " CREATE TABLE slow_rows (n int CHECK (slow_check()));"
            " INSERT INTO slow_rows VALUES (1);"
        )
    return f"CREATE MATERIALIZED VIEW slow_refresh AS SELECT 1 AS n FROM pg_sleep({sleep})"


async def interrupt_in_the_slow_statement(
    cli: subprocess.Popen[str], target: DatabaseConfig, signum: signal.Signals
) -> tuple[int, str, set[int]]:
    """Once psql sits in `slow_to_restore`'s statement (the dump's other statements ran in
    its transaction), `stop` the restoring CLI with `signum`; killed if it outlives that."""
    try:
        await wait_for(
            target,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1"
            " AND wait_event = 'PgSleep')",
            target.database,
        )
        return await stop(cli, signum)
    finally:
        if cli.poll() is None:
            cli.kill()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("where", ["data", "post-data"])
async def test_an_interrupted_restore_commits_nothing_and_leaves_nothing_running(
    store: DatabaseConfig,
    target_db: DatabaseConfig,
    tmp_path: Path,
    signum: signal.Signals,
    where: str,
) -> None:
    await execute(store, slow_to_restore(store, where))
    file = tmp_path / "store.dump"
    await backup_database(store, file, plain=False, show_progress=False)
    before = await table_checksums(target_db)
    cli = start_cli("db", "restore", str(file), "--force", config=target_db)
    returncode, stderr, children = await interrupt_in_the_slow_statement(cli, target_db, signum)

    assert returncode == 128 + signum, stderr
    assert stderr.rstrip().splitlines()[-1] == (
        f"interrupted ({signum.name}): nothing was restored; {target_db.redacted()} is as it was"
    )
    assert "Traceback" not in stderr
    # Its tools had ended before it exited: nothing is left that could still commit.
    assert not [pid for pid in children if running(pid)]
    assert await other_sessions(target_db) == []
    assert await table_checksums(target_db) == before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("plain", [False, True])
async def test_an_interrupted_backup_stops_pg_dump_and_leaves_no_file(
    store: DatabaseConfig, tmp_path: Path, signum: signal.Signals, plain: bool
) -> None:
    file = tmp_path / ("store.sql" if plain else "store.dump")
    partial = tmp_path / f".{file.name}.partial"
    # pg_dump waits for this lock (its ACCESS SHARE lock on every table it dumps).
    holder = await asyncpg.connect(**store.asyncpg_connect_kwargs())
    try:
        await holder.execute('BEGIN; LOCK TABLE "Coupon" IN ACCESS EXCLUSIVE MODE')
        cli = start_cli("db", "backup", *(["--plain"] if plain else []), str(file), config=store)
        try:
            await wait_for(
                store,
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1"
                " AND wait_event_type = 'Lock' AND pid <> $2)",
                store.database,
                holder.get_server_pid(),
            )
            assert partial.exists()
            returncode, stderr, children = await stop(cli, signum)
        finally:
            if cli.poll() is None:
                cli.kill()
    finally:
        await holder.close()

    assert returncode == 128 + signum, stderr
    assert stderr.rstrip().splitlines()[-1] == (
        f"interrupted ({signum.name}): no backup was written to {file} "
        "(pg_dump stopped, the partial file removed)"
    )
    assert not [pid for pid in children if running(pid)]
    assert await other_sessions(store) == []
    assert list(tmp_path.iterdir()) == []


async def test_whether_a_restores_transaction_committed_is_asked_of_the_server(
    scratch_db: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an interrupted restore says rests on this, not on psql's exit code: psql
    stopped by Ctrl-C right after its COMMIT exits 3 all the same."""
    monkeypatch.setattr(restore_module, "STOP_GRACE", 0.3)

    async def transaction(end: str | None) -> tuple[RestoreTransaction, asyncpg.Connection]:
        connection = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
        await connection.execute("BEGIN")
        row = await connection.fetchrow("SELECT pg_backend_pid() AS pid, txid_current() AS xid")
        assert row is not None
        if end:
            await connection.execute(end)
        return RestoreTransaction(pid=row["pid"], xid=row["xid"]), connection

    committed, first = await transaction("COMMIT")
    rolled_back, second = await transaction("ROLLBACK")
    # Still open, psql gone: its server process is ended and the transaction with it.
    left_open, third = await transaction(None)
    try:
        assert await transaction_committed(scratch_db, committed) is True
        assert await transaction_committed(scratch_db, rolled_back) is False
        assert await transaction_committed(scratch_db, left_open) is False
        # Never announced: psql never got past the restore's first statement.
        assert await transaction_committed(scratch_db, RestoreTransaction()) is False
    finally:
        for connection in (first, second, third):
            connection.terminate()


async def test_interrupting_another_command_says_so(store: DatabaseConfig) -> None:
    """Typer turned KeyboardInterrupt into a silent exit 130: `coursehub` never printed
    its "interrupted" line."""
    holder = await asyncpg.connect(**store.asyncpg_connect_kwargs())
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        cli = start_cli("db", "migrate", config=store)
        try:
            await wait_for(
                store,
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1"
                " AND wait_event = 'advisory' AND pid <> $2)",
                store.database,
                holder.get_server_pid(),
            )
            cli.send_signal(signal.SIGINT)
            _, stderr = await asyncio.to_thread(cli.communicate, timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
    finally:
        await holder.close()

    assert cli.returncode == 130, stderr
    assert stderr.rstrip().splitlines()[-1] == "interrupted"


# --- refused before anything is dumped or created -------------------------------------------


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The programs started through asyncio (the tools' `--version` probes aside)."""
    seen: list[tuple[str, ...]] = []
    real = asyncio.create_subprocess_exec

    async def spy(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        if "--version" not in args:
            seen.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    return seen


def special_file(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A path that exists and is no regular file, where a backup would be written."""
    kept = tmp_path / "kept.txt"
    kept.write_text("not a backup\n")
    path = tmp_path / "b.dump"
    if kind == "symlink":
        path.symlink_to(kept)
    elif kind == "dangling symlink":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        # A directory is written into, under the default name: that name is a directory.
        monkeypatch.setattr(backup_module, "default_backup_path", lambda **_: Path("b.dump"))
        (tmp_path / "into").mkdir()
        (tmp_path / "into" / "b.dump").mkdir()
        return tmp_path / "into"
    return path


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "fifo", "directory"])
async def test_a_backup_never_replaces_what_is_no_regular_file(
    scratch_db: DatabaseConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spawned: list[tuple[str, ...]],
    kind: str,
) -> None:
    """`coursehub db backup /dev/null` renamed the finished dump over the device."""
    target = special_file(kind, tmp_path, monkeypatch)
    written = target / "b.dump" if kind == "directory" else target
    before = written.lstat()

    with pytest.raises(BackupFailed, match="exists and is not a regular file") as raised:
        await backup_database(scratch_db, target, plain=False, show_progress=False)

    assert str(written) in str(raised.value) and "\n" not in str(raised.value)
    assert spawned == []  # refused before pg_dump was started
    after = written.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert (tmp_path / "kept.txt").read_text() == "not a backup\n"
    assert not list(tmp_path.rglob("*.partial"))


async def test_a_regular_file_is_still_replaced(scratch_db: DatabaseConfig, tmp_path: Path) -> None:
    file = tmp_path / "b.dump"
    file.write_text("last week's\n")

    await backup_database(scratch_db, file, plain=False, show_progress=False)

    assert file.read_bytes().startswith(b"PGDMP")


@pytest.fixture
async def new_database(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A database (with ?schema=) that does not exist; dropped afterwards if it came to."""
    config = replace(server.with_database(scratch_database_name("never")), schema="shop")
    yield config
    await drop_database(config)


async def database_exists(config: DatabaseConfig) -> bool:
    admin = config.with_database("postgres")
    return bool(
        await fetchval(
            admin, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", config.database
        )
    )


async def test_a_restore_of_a_missing_file_creates_no_database(
    new_database: DatabaseConfig, tmp_path: Path
) -> None:
    """It printed "Created database …", then failed: the database stayed behind."""
    failed = await asyncio.to_thread(
        run_cli, "db", "restore", str(tmp_path / "missing.dump"), config=new_database
    )

    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no such file: {tmp_path / 'missing.dump'}"]
    assert "Created database" not in failed.stderr
    assert not await database_exists(new_database)


@pytest.fixture
async def shop_store(scratch_db: DatabaseConfig) -> DatabaseConfig:
    """A store in `?schema=shop`, as `new_database` is, with the demo data."""
    config = replace(scratch_db, schema="shop")
    await migrate(config)
    await seed_demo_data(config)
    return config


async def not_a_dump(store: DatabaseConfig, tmp_path: Path, kind: str) -> Path:
    """A file that exists and is readable, and that no restore can take."""
    if kind == "text":
        file = tmp_path / "hello.txt"
        file.write_text("hello\n")
        return file
    whole, file = tmp_path / "store.sql", tmp_path / "cut.sql"
    await backup_database(store, whole, plain=True, show_progress=False)
    file.write_bytes(whole.read_bytes()[:-5000])
    return file


@pytest.mark.parametrize(
    ("kind", "reason"), [("text", "not a readable pg_dump archive"), ("truncated", "truncated")]
)
async def test_a_restore_of_a_file_that_is_no_usable_dump_creates_no_database(
    shop_store: DatabaseConfig, new_database: DatabaseConfig, tmp_path: Path, kind: str, reason: str
) -> None:
    """The database was created before the file was looked at, and stayed behind."""
    file = await not_a_dump(shop_store, tmp_path, kind)

    failed = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=new_database)

    assert failed.returncode == 1, failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and reason in errors[0] and str(file) in errors[0], failed.stderr
    assert "Created database" not in failed.stderr and "Traceback" not in failed.stderr
    assert not await database_exists(new_database)


async def cut_in_its_data(store: DatabaseConfig, tmp_path: Path) -> Path:
    """A custom-format backup of `store` cut short inside its data: its table of contents
    still reads (`pg_restore --list`, as the restore's checks run it), so the file passes
    them and the restore fails half-way, at the missing rows."""
    whole, cut = tmp_path / "store.dump", tmp_path / "cut.dump"
    await backup_database(store, whole, plain=False, show_progress=False)
    data = whole.read_bytes()
    pg_restore = (await find_tools(store, ("pg_restore",)))["pg_restore"]
    for size in (200, 1000, 3000, 10000):
        cut.write_bytes(data[:-size])
        try:
            await inspect_backup(cut, store.schema, pg_restore)
        except RestoreFailed:
            continue  # cut into the table of contents: refused before anything is created
        return cut
    raise AssertionError(f"every cut of {whole} ({len(data)} bytes) broke its table of contents")


async def test_a_restore_that_fails_after_creating_the_database_drops_it(
    shop_store: DatabaseConfig, new_database: DatabaseConfig, tmp_path: Path
) -> None:
    """The database was created, the restore found the data cut short and rolled back,
    and the new, empty database stayed behind."""
    file = await cut_in_its_data(shop_store, tmp_path)

    failed = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=new_database)

    assert failed.returncode == 1, failed.stderr
    assert f"Created database {new_database.database!r}." in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert f"{file} is corrupt or truncated" in errors[0]
    assert errors[0].endswith(
        f"nothing was changed; the database {new_database.database!r} it created was dropped again"
    )
    assert not await database_exists(new_database)


async def test_a_failed_restore_leaves_a_database_that_existed_before(
    shop_store: DatabaseConfig, new_database: DatabaseConfig, tmp_path: Path
) -> None:
    file = await cut_in_its_data(shop_store, tmp_path)
    await ensure_database_exists(new_database)  # existing, and as empty as a new one

    failed = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=new_database)

    assert failed.returncode == 1, failed.stderr
    assert "Created database" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert f"{file} is corrupt or truncated" in errors[0]
    assert errors[0].endswith("; nothing was changed")  # and nothing said of dropping
    assert await database_exists(new_database)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_restore_interrupted_after_creating_the_database_drops_it(
    shop_store: DatabaseConfig, new_database: DatabaseConfig, tmp_path: Path, signum: signal.Signals
) -> None:
    await execute(shop_store, slow_to_restore(shop_store, "data"))
    file = tmp_path / "store.dump"
    await backup_database(shop_store, file, plain=False, show_progress=False)
    cli = start_cli("db", "restore", str(file), config=new_database)
    returncode, stderr, children = await interrupt_in_the_slow_statement(cli, new_database, signum)

    assert returncode == 128 + signum, stderr
    assert stderr.rstrip().splitlines()[-1] == (
        f"interrupted ({signum.name}): nothing was restored; {new_database.redacted()} is as "
        f"it was; the database {new_database.database!r} it created was dropped again"
    )
    assert "Traceback" not in stderr
    assert not [pid for pid in children if running(pid)]
    assert not await database_exists(new_database)


async def test_a_created_database_is_left_if_another_session_uses_it(
    shop_store: DatabaseConfig,
    new_database: DatabaseConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not dropped by force: the session may be another restore's into the same database,
    or the app's. The failure is still the restore's own, and says what it left."""
    file = await cut_in_its_data(shop_store, tmp_path)
    sessions: list[asyncpg.Connection] = []

    async def creating_and_joined(config: DatabaseConfig) -> bool:
        created = await ensure_database_exists(config)
        sessions.append(await asyncpg.connect(**config.asyncpg_connect_kwargs()))
        return created

    monkeypatch.setattr(restore_module, "ensure_database_exists", creating_and_joined)
    try:
        with pytest.raises(RestoreFailed) as raised:
            await restore_database(
                new_database, file, force=False, show_progress=False, create_database=True
            )
        assert await database_exists(new_database)
    finally:
        for session in sessions:
            await session.close()

    message = str(raised.value)
    assert message.startswith(f"{file} is corrupt or truncated") and "\n" not in message
    assert message.endswith(
        f"nothing was changed; the empty database {new_database.database!r} it created was "
        f'left (database "{new_database.database}" is being accessed by other users) '
        "and can be dropped"
    )


async def test_a_created_database_is_left_if_another_session_created_tables_in_it(
    shop_store: DatabaseConfig,
    new_database: DatabaseConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second restore or `db migrate` into the same URL may have committed its work in
    the database meanwhile, and left: it is not dropped with that work."""
    file = await cut_in_its_data(shop_store, tmp_path)

    async def creating_and_used(config: DatabaseConfig) -> bool:
        created = await ensure_database_exists(config)
        await execute(config, "CREATE TABLE theirs (n int); INSERT INTO theirs VALUES (1)")
        return created

    monkeypatch.setattr(restore_module, "ensure_database_exists", creating_and_used)

    with pytest.raises(RestoreFailed) as raised:
        await restore_database(
            new_database, file, force=True, show_progress=False, create_database=True
        )

    assert str(raised.value).endswith(
        f"nothing was changed; the database {new_database.database!r} it created was left: "
        "another session has created tables in it since"
    )
    assert await fetchval(new_database, "SELECT n FROM theirs") == 1


async def test_a_restore_into_a_missing_database_creates_it(
    shop_store: DatabaseConfig, new_database: DatabaseConfig, tmp_path: Path
) -> None:
    file = tmp_path / "store.dump"
    await backup_database(shop_store, file, plain=False, show_progress=False)

    restored = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=new_database)

    assert restored.returncode == 0, restored.stderr
    assert f"Created database {new_database.database!r}." in restored.stderr
    assert f"Restored {file} into {new_database.redacted()}" in restored.stdout
    assert await table_checksums(new_database) == await table_checksums(shop_store)


@pytest.mark.parametrize("fault", ["server down", "wrong password"])
async def test_a_restore_that_cannot_reach_the_server_is_one_line(
    server: DatabaseConfig, new_database: DatabaseConfig, tmp_path: Path, fault: str
) -> None:
    """The database may be missing until the restore creates it: the server is checked
    first, and its refusal is still the one line `db status` gives."""
    if fault == "wrong password" and server.is_socket:
        pytest.skip("the embedded server trusts every local user; no password to get wrong")
    file = tmp_path / "hello.txt"
    file.write_text("hello\n")
    if fault == "server down":
        config, says = replace(new_database, host="127.0.0.1", port=1), "cannot reach PostgreSQL"
    else:
        config, says = replace(new_database, user="nobody_here", password="x"), "wrong user"

    failed = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=config)

    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in failed.stderr
    assert not await database_exists(new_database)


async def test_a_reset_refused_without_a_terminal_creates_no_database(
    new_database: DatabaseConfig,
) -> None:
    refused = await asyncio.to_thread(run_cli, "db", "reset", "--no-seed", config=new_database)

    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--force" in errors[0]
    assert not await database_exists(new_database)


async def test_a_reset_not_confirmed_at_a_terminal_creates_no_database(
    new_database: DatabaseConfig,
) -> None:
    """At a terminal the question came after the database had been created."""
    controller, terminal = pty.openpty()
    environment = {
        k: v for k, v in os.environ.items() if k not in ("ADMIN_EMAIL", "ADMIN_PASSWORD")
    }
    environment["DATABASE_URL"] = new_database.to_url()
    try:
        cli = subprocess.Popen(
            [sys.executable, "-m", "coursehub", "db", "reset", "--no-seed"],
            env=environment,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, b"not-the-name\n")
        stdout, stderr = await asyncio.to_thread(cli.communicate, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)

    assert cli.returncode == 1, stderr
    assert f"Type the database name ({new_database.database})" in stdout
    assert stderr.rstrip().splitlines()[-1] == "error: not confirmed; nothing was changed"
    assert not await database_exists(new_database)


# --- the `--version` probe ------------------------------------------------------------------


async def test_a_tool_probe_cancelled_leaves_no_process(tmp_path: Path) -> None:
    """A `--version` that does not answer was left running when its wait ended."""
    started = tmp_path / "pid"
    tool = tmp_path / "pg_dump"
    tool.write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep {SLEEP}\n")
    tool.chmod(0o755)

    probe = asyncio.create_task(tool_version(str(tool)))
    deadline = time.monotonic() + 30
    while not started.exists() or not started.read_text().strip():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    assert not running(int(started.read_text()))
