"""core/dburl.py: every PostgreSQL parameter Prisma reads is read here too, and honoured,
or refused in one line saying why.

Prisma's list: its PostgreSQL connector's docs and quaint's `parse_query_params`
(prisma-engines), which reads `max_connection_lifetime` and
`max_idle_connection_lifetime` besides. What each must do here: `options` reaches the
store's connections and the client tools; the two lifetimes are the pool's;
`channel_binding=require`, which asyncpg cannot give, is refused rather than dropped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy import text

from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig, parse_database_url
from coursehub.core.errors import ConfigurationError
from coursehub.db.tool_processes import tool_environment
from tests.test_cli import error_lines, run_cli

NEON_URL = (
    "postgresql://neondb_owner:npg_secret@ep-cool-darkness-a1b2c3d4-pooler.eu-central-1"
    ".aws.neon.tech/neondb?sslmode=require&channel_binding=require"
)


def with_parameters(config: DatabaseConfig, query: str) -> DatabaseConfig:
    url = config.to_url()
    return parse_database_url(url + ("&" if "?" in url else "?") + query)


def psql(config: DatabaseConfig, query: str) -> str:
    """`query`'s answer from psql, run with the environment the client tools get."""
    answered = subprocess.run(
        ["psql", "--no-psqlrc", "--tuples-only", "--no-align", f"--command={query}"],
        env=tool_environment(config),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answered.returncode == 0, answered.stderr
    return answered.stdout.strip()


needs_psql = pytest.mark.skipif(shutil.which("psql") is None, reason="needs psql")


@pytest.fixture
def certificate(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("")
    return str(path)


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("schema", "store"),
        ("connection_limit", "5"),
        ("connect_timeout", "5"),
        ("pool_timeout", "10"),
        ("sslmode", "prefer"),
        ("sslcert", "CERTIFICATE"),
        ("sslrootcert", "CERTIFICATE"),
        ("sslidentity", "CERTIFICATE"),
        ("sslpassword", "secret"),
        ("sslaccept", "accept_invalid_certs"),
        ("host", "/var/run/postgresql"),
        ("socket_timeout", "3"),
        ("pgbouncer", "true"),
        ("statement_cache_size", "100"),
        ("application_name", "shop"),
        ("channel_binding", "prefer"),
        ("options", "-c statement_timeout=5s"),
        ("max_connection_lifetime", "600"),
        ("max_idle_connection_lifetime", "300"),
    ],
)
def test_every_parameter_prisma_reads_is_known(
    parameter: str, value: str, certificate: str
) -> None:
    value = certificate if value == "CERTIFICATE" else value

    parse_database_url(f"postgresql://u@h/db?{parameter}={value}")


# --- channel_binding -----------------------------------------------------------------


def test_channel_binding_require_is_refused_saying_why_and_what_to_do() -> None:
    """Neon's connection strings carry it. asyncpg's SCRAM never binds the login to TLS
    (it sends the `n,,` header, SCRAM-SHA-256 only): going on would silently drop the
    protection the URL asks for."""
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url(NEON_URL)

    message = str(raised.value)
    assert "channel_binding=require" in message and "asyncpg" in message
    assert "sslmode=verify-full" in message  # what to do instead
    assert "\n" not in message
    assert "npg_secret" not in message


def test_channel_binding_require_is_one_line_from_the_cli(server: DatabaseConfig) -> None:
    url = server.to_url()
    result = run_cli(
        "db",
        "status",
        database_url=url + ("&" if "?" in url else "?") + "channel_binding=require",
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "channel_binding=require cannot be honoured" in lines[0]


@needs_psql
@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_channel_binding_disable_and_prefer_are_accepted(
    server: DatabaseConfig, mode: str
) -> None:
    """The store's connections never bind (what `disable` asks, and what `prefer` allows);
    the client tools, libpq, get the value as it is."""
    config = with_parameters(server.with_database("postgres"), f"channel_binding={mode}")

    assert config.channel_binding == mode
    assert config.libpq_environment()["PGCHANNELBINDING"] == mode
    assert psql(config, "SELECT 1") == "1"
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    await connection.close()


def test_channel_binding_unknown_values_are_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url("postgresql://u@h/db?channel_binding=maybe")

    assert "channel_binding='maybe'" in str(raised.value)


# --- options -------------------------------------------------------------------------


@needs_psql
async def test_options_reach_the_stores_connections_and_the_client_tools(
    server: DatabaseConfig,
) -> None:
    # -c name=value, --name=value (a "-" in the name is a "_"), backslash escapes.
    config = with_parameters(
        server.with_database("postgres"),
        "options=-c%20statement_timeout%3D1234%20--lock-timeout%3D2s%20"
        "-c%20coursehub.note%3Da%5C%20b%5C%5Cc",
    )
    shown = (
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
        "current_setting('coursehub.note')"
    )

    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        assert tuple(await connection.fetchrow(shown)) == ("1234ms", "2s", "a b\\c")
    finally:
        await connection.close()
    database = Database(config, pool_size=1)
    try:
        async with database.read_connection() as pooled:
            assert tuple(await pooled.fetchrow(shown)) == ("1234ms", "2s", "a b\\c")
        async with database.transaction() as session:
            assert (await session.execute(text(shown))).one() == ("1234ms", "2s", "a b\\c")
    finally:
        await database.dispose()
    assert psql(config, shown) == "1234ms|2s|a b\\c"


def test_options_are_split_as_the_server_splits_them() -> None:
    options = r"-c my.a=first  -cwork_mem=1MB --lock-timeout=3s -c my.b=x\ y\\z -c my.a=last"
    config = parse_database_url("postgresql://u@h/db?options=" + quote(options, safe=""))

    # Given twice, the last value counts, as on the server.
    assert config.options == (
        ("work_mem", "1MB"),
        ("lock_timeout", "3s"),
        ("my.b", "x y\\z"),
        ("my.a", "last"),
    )
    assert config.server_settings()["lock_timeout"] == "3s"
    assert config.libpq_environment()["PGOPTIONS"] == (
        r"-c work_mem=1MB -c lock_timeout=3s -c my.b=x\ y\\z -c my.a=last"
    )
    spaced = replace(config, options=(("my.b", "a b\\c"),))
    assert spaced.libpq_environment()["PGOPTIONS"] == "-c my.b=a\\ b\\\\c"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("-c search_path=elsewhere", "search_path"),
        ("--search-path=elsewhere", "search_path"),
        ("-c TimeZone=Europe/Paris", "TimeZone"),
        ("-c application_name=x", "application_name"),
        ("-c default_transaction_isolation=serializable", "default_transaction_isolation"),
    ],
)
def test_options_may_not_set_what_coursehub_sets_itself(options: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url("postgresql://u@h/db?options=" + options.replace(" ", "%20"))

    assert f"options sets {named}, which CourseHub sets itself" in str(raised.value)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ("-B 100", "'-B' is not a server setting"),
        ("statement_timeout=5", "'statement_timeout=5' is not a server setting"),
        ("-c", "needs a name and a value"),
        ("-c statement_timeout", "needs a name and a value"),
        ("--=5", "needs a name and a value"),
    ],
)
def test_options_other_than_settings_are_refused(options: str, said: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url("postgresql://u@h/db?options=" + options.replace(" ", "%20"))

    assert said in str(raised.value)
    assert "\n" not in str(raised.value)


# --- application_name ----------------------------------------------------------------


@needs_psql
async def test_application_name_reaches_the_server_and_the_client_tools(
    server: DatabaseConfig,
) -> None:
    config = with_parameters(server.with_database("postgres"), "application_name=shop%20api")

    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        assert await connection.fetchval("SHOW application_name") == "shop api"
    finally:
        await connection.close()
    assert psql(config, "SHOW application_name") == "shop api"


# --- the pool's lifetimes ------------------------------------------------------------


async def backend_of(database: Database, *, through_session: bool = False) -> int:
    """The server process of the connection the pool hands out next."""
    if through_session:
        async with database.transaction() as session:
            pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            return pid
    async with database.read_connection() as connection:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        return pid


def test_lifetimes_are_read_as_prisma_reads_them() -> None:
    default = parse_database_url("postgresql://u@h/db")
    given = parse_database_url(
        "postgresql://u@h/db?max_connection_lifetime=600&max_idle_connection_lifetime=30"
    )
    unlimited = parse_database_url(
        "postgresql://u@h/db?max_connection_lifetime=0&max_idle_connection_lifetime=0"
    )

    assert (default.max_connection_lifetime, default.max_idle_connection_lifetime) == (1800, 0)
    assert (given.max_connection_lifetime, given.max_idle_connection_lifetime) == (600, 30)
    assert (unlimited.max_connection_lifetime, unlimited.max_idle_connection_lifetime) == (0, 0)
    for name in ("max_connection_lifetime", "max_idle_connection_lifetime"):
        for value in ("-1", "nan", "soon"):
            with pytest.raises(ConfigurationError) as raised:
                parse_database_url(f"postgresql://u@h/db?{name}={value}")
            assert f"parameter {name}" in str(raised.value)


async def test_max_connection_lifetime_is_the_pools_recycle_time(server: DatabaseConfig) -> None:
    """A connection older than it is replaced before it is handed out, busy or not."""
    config = server.with_database("postgres")
    for query, recycle in (("", 1800), ("max_connection_lifetime=0", -1)):
        database = Database(with_parameters(config, query) if query else config, pool_size=1)
        assert database.engine.pool._recycle == recycle
        await database.dispose()

    database = Database(with_parameters(config, "max_connection_lifetime=1"), pool_size=1)
    try:
        first = await backend_of(database)
        backends = {first}
        for _ in range(15):  # busy every 0.1 s, for 1.5 s
            await asyncio.sleep(0.1)
            backends.add(await backend_of(database))
        assert len(backends) >= 2
    finally:
        await database.dispose()


@pytest.mark.parametrize("through_session", [False, True])
async def test_max_idle_connection_lifetime_replaces_a_connection_idle_longer(
    server: DatabaseConfig, through_session: bool
) -> None:
    """Checked at checkout, on the direct path (`read_connection`) and the sessions':
    a connection idle longer than the limit is replaced before it is handed out; one
    used more often is kept, however old."""
    config = server.with_database("postgres")
    limited = Database(with_parameters(config, "max_idle_connection_lifetime=1"), pool_size=1)
    unlimited = Database(config, pool_size=1)
    try:
        first = await backend_of(limited, through_session=through_session)
        for _ in range(12):  # used every 0.1 s, for longer than the limit
            await asyncio.sleep(0.1)
            assert await backend_of(limited, through_session=through_session) == first
        kept = await backend_of(unlimited, through_session=through_session)

        await asyncio.sleep(1.3)

        assert await backend_of(limited, through_session=through_session) != first
        assert await backend_of(unlimited, through_session=through_session) == kept
    finally:
        await limited.dispose()
        await unlimited.dispose()


def test_the_tools_get_a_clean_environment_for_the_new_parameters() -> None:
    """Without the parameters, no PGOPTIONS and no PGCHANNELBINDING: libpq's defaults."""
    env = parse_database_url("postgresql://u@h/db").libpq_environment()

    assert "PGOPTIONS" not in env and "PGCHANNELBINDING" not in env
