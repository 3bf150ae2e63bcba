"""core/dburl.py: `DatabaseConfig.to_url()` reads back as the configuration it came from.

The CLI and `coursehub bench` hand `to_url()` to child processes (bench/http.py: the
server it measures), so a URL that reads back differently sends them to another server,
socket or schema. Property-style: thousands of URLs drawn (with a fixed seed) from every
form the parser accepts, each component written in the ways a URL may write it.
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest

from coursehub.core.dburl import KNOWN_PARAMETERS, DatabaseConfig, parse_database_url

USERS = [None, "postgres", "u", "a@b", "x:y", "sp ace", "plus+sign", "100%", "ünï", "s/l?#&="]
PASSWORDS = [None, "", "s3cret", "p@ss:w/rd?#&=", "ü ñ", "%41", "+ +"]
# As they stand in the authority, encoded already.
AUTHORITY_HOSTS = [
    "",
    "localhost",
    "db.internal",
    "DB.Example.COM",
    "127.0.0.1",
    "[::1]",
    "[2001:DB8::ff]",
    "[fe80::1%25eth0]",
    "%2Fvar%2Frun%2Fpostgresql",
    "%2Ftmp%2FSocket%20Dir",
    "db%2Dx",
]
# The `host` parameter: a socket directory, or a name (which then wins over the authority's).
HOST_PARAMETERS = [
    None,
    "/var/run/postgresql",
    "/tmp/dir with space",
    "/tmp/a&b=c+d%e",
    "::1",
    "2001:db8::1",
    "fe80::1%eth 0",
    "db.other",
]
PORTS = [None, 5432, 5433, 6543, 1, 65535]
DATABASES = [None, "", "store", "my db", "a/b", "ü", "x?y#z", "100%", "+"]
VALUES = {
    "schema": ["store", "a b", 'Shop "A"', "x&y=z+1", "public", "ü"],
    "connection_limit": ["1", "7", "100"],
    "pool_timeout": ["0", "2.5", "10", "30"],
    "connect_timeout": ["0", "0.25", "5", "60"],
    "socket_timeout": ["0.5", "30"],
    "max_connection_lifetime": ["0", "60", "1800", "0.25"],
    "max_idle_connection_lifetime": ["0", "300", "1.5"],
    "statement_cache_size": ["0", "100", "250"],
    "application_name": ["my app", "ü+&=", "coursehub", ""],
    "pgbouncer": ["true", "false", "1", "no"],
    "channel_binding": ["disable", "prefer", ""],
    "options": [
        "-c statement_timeout=5s",
        "--lock-timeout=2s -cwork_mem=64MB",
        r"-c my.x=a\ b\\c -c my.x=last",
        "-c my.y= ",
        "-c my.z=a=b&c+d%",
        "",
    ],
}
SCHEMES = ["postgresql", "postgres"]


def tls_combinations(files: Path) -> list[dict[str, str]]:
    """The TLS parameters in the combinations the parser accepts (`_check_tls`)."""
    ca, client, key, identity = (
        str(files / name) for name in ("ca.pem", "client.pem", "client.key", "id.p12")
    )
    return [
        {},
        *({"sslmode": mode} for mode in ("disable", "allow", "prefer", "require")),
        {"sslmode": "verify-ca"},
        {"sslmode": "verify-full"},
        {"sslaccept": "accept_invalid_certs"},
        {"sslmode": "require", "sslaccept": "strict"},
        {"sslmode": "verify-full", "sslaccept": "strict"},
        {"sslcert": ca, "sslaccept": "strict"},
        {"sslidentity": identity, "sslpassword": "p w&=+%"},
        {"sslcert": client, "sslkey": key, "sslrootcert": ca, "sslmode": "verify-ca"},
        {"sslcert": client, "sslkey": key, "sslpassword": "x"},
        {"sslrootcert": "system", "sslmode": "verify-full"},
    ]


def encoded(value: str, rng: random.Random, *, safe: str = "") -> str:
    """`value` as a URL may carry it: percent-encoded, `+` for spaces (a query's), or as
    it is when nothing in it needs encoding."""
    forms = [quote(value, safe=safe), quote_plus(value, safe=safe)]
    return rng.choice(forms)


def drawn_url(rng: random.Random, tls: list[dict[str, str]]) -> str:
    user, password = rng.choice(USERS), rng.choice(PASSWORDS)
    userinfo = ""
    if user is not None:
        userinfo = quote(user, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    port = rng.choice(PORTS)
    authority = rng.choice(AUTHORITY_HOSTS) + (f":{port}" if port is not None else "")
    database = rng.choice(DATABASES)
    path = "" if database is None else "/" + quote(database, safe="")

    params: dict[str, str] = dict(rng.choice(tls))
    for name, values in VALUES.items():
        if rng.random() < 0.35:
            params[name] = rng.choice(values)
    host = rng.choice(HOST_PARAMETERS)
    if host is not None:
        params["host"] = host
    names = list(params)
    rng.shuffle(names)
    query = "&".join(f"{name}={encoded(params[name], rng, safe='/')}" for name in names)
    return f"{rng.choice(SCHEMES)}://{userinfo}{authority}{path}" + (f"?{query}" if query else "")


@pytest.fixture
def tls_files(tmp_path: Path) -> Path:
    """Files for the TLS parameters, in a directory whose name needs encoding. Parsing
    only checks they exist."""
    files = tmp_path / "certificates & keys=+%"
    files.mkdir()
    for name in ("ca.pem", "client.pem", "client.key", "id.p12"):
        (files / name).write_text("")
    return files


def test_every_accepted_url_reads_back_as_the_same_configuration(tls_files: Path) -> None:
    rng = random.Random(20240611)
    tls = tls_combinations(tls_files)
    seen: set[str] = set()
    for _ in range(4000):
        url = drawn_url(rng, tls)
        config = parse_database_url(url)
        again = parse_database_url(config.to_url())

        assert again == config, f"{url} -> {config.to_url()}"
        assert again.to_url() == config.to_url()
        seen.update(name for name, _ in parse_qsl(urlsplit(config.to_url()).query))
        seen.add("socket" if config.is_socket else "ipv6" if ":" in config.host else "tcp")
        seen.add(f"port {config.port}")
    # The draw reached every kind of host, ports other than the default, every parameter.
    assert {"socket", "ipv6", "tcp", "port 5432", "port 5433"} <= seen
    assert seen >= KNOWN_PARAMETERS


@pytest.mark.parametrize(
    "config",
    [
        DatabaseConfig("u", None, "/var/run/postgresql", 5433, "db"),
        DatabaseConfig("u", "p", "::1", 5433, "db"),
        DatabaseConfig("u", "p", "fe80::1%eth0", 5433, "db"),
        DatabaseConfig("u", "p", "fe80::1%eth 0", 5433, "db"),
        DatabaseConfig("u@x", "p:w/?#", "db.internal", 6543, "a/b?#%"),
        DatabaseConfig("u", None, "h", 5432, "db", options=(("my.x", "a b\\c"), ("work_mem", ""))),
    ],
)
def test_a_configuration_reads_back_from_its_url(config: DatabaseConfig) -> None:
    assert parse_database_url(config.to_url()) == config
