"""core/dburl.py: DATABASE_URL's TLS parameters, with Prisma's meanings and libpq's.

What must hold: Prisma's `sslcert` is the CA the server is verified with (when
`sslaccept=strict`; Prisma's default verifies nothing), its `sslidentity` (a PKCS12 file,
`sslpassword` its password) is the client's certificate; a libpq URL (`sslkey` given)
keeps libpq's meanings; the client tools get the same TLS, as PEM files libpq can read.

The local server has no TLS, so the SSL contexts built for asyncpg are checked by a TLS
handshake with a server of the test's own: certificates made here with `openssl`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import stat
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from coursehub.core.dburl import DatabaseConfig, parse_database_url
from coursehub.core.errors import ConfigurationError

P12_PASSWORD = "p12-secret"
KEY_PASSWORD = "key-secret"


def _openssl(directory: Path, *arguments: str) -> None:
    subprocess.run(["openssl", *arguments], cwd=directory, check=True, capture_output=True)


def _certificate(directory: Path, name: str, subject: str, *, ca: str, extensions: str) -> None:
    """`name`.pem and `name`.key: a certificate for `subject` signed by the CA `ca`."""
    _openssl(
        directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
        "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
        "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA; a server certificate for localhost and a client certificate it signed; the
    client's key encrypted, and both in a PKCS12 file; and another CA, signing nothing
    here, with a server certificate of its own."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes these tests' certificates")
    directory = tmp_path_factory.mktemp("certificates")
    for ca, subject in (("ca", "/CN=CourseHub test CA"), ("other-ca", "/CN=Another CA")):
        _openssl(
            directory, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{ca}.key",
            "-out", f"{ca}.pem", "-days", "2", "-subj", subject,
        )  # fmt: skip
    server = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    _certificate(directory, "server", "/CN=localhost", ca="ca", extensions=server)
    _certificate(directory, "other-server", "/CN=localhost", ca="other-ca", extensions=server)
    client = "extendedKeyUsage=clientAuth\n"
    _certificate(directory, "client", "/CN=coursehub-client", ca="ca", extensions=client)
    _openssl(
        directory, "pkey", "-in", "client.key", "-aes256",
        "-passout", f"pass:{KEY_PASSWORD}", "-out", "client-encrypted.key",
    )  # fmt: skip
    _openssl(
        directory, "pkcs12", "-export", "-in", "client.pem", "-inkey", "client.key",
        "-certfile", "ca.pem", "-passout", f"pass:{P12_PASSWORD}", "-out", "client.p12",
    )  # fmt: skip
    return directory


@asynccontextmanager
async def tls_server(certificates: Path, name: str = "server") -> AsyncIterator[int]:
    """A TLS server on a free port with the certificate `name`; it asks for a client
    certificate (signed by the test CA) and answers with the common name it got, or "-"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / f"{name}.pem", certificates / f"{name}.key")
    context.load_verify_locations(certificates / "ca.pem")
    context.verify_mode = ssl.CERT_OPTIONAL

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        names = [value for field in peer.get("subject", ()) for key, value in field]
        writer.write((names[0] if names else "-").encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def handshake(context: Any, port: int, host: str = "localhost") -> str:
    """Connect with the SSL context built for asyncpg, as asyncpg does (the host's name is
    the one checked), and return the client certificate's name the server saw."""
    assert isinstance(context, ssl.SSLContext), context
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=host
    )
    try:
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


def url(certificates: Path, query: str) -> str:
    return f"postgresql://u@localhost/db?{query.format(dir=certificates)}"


def ssl_context(config: DatabaseConfig) -> Any:
    return config.asyncpg_connect_kwargs().get("ssl")


async def test_prisma_sslcert_is_the_ca_the_server_is_verified_with(certificates: Path) -> None:
    config = parse_database_url(
        url(certificates, "sslmode=require&sslcert={dir}/ca.pem&sslaccept=strict")
    )

    context = ssl_context(config)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    async with tls_server(certificates) as port:
        assert await handshake(context, port) == "-"  # verified; no client certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(context, port, host="db.example.com")  # not the certificate's name
    async with tls_server(certificates, "other-server") as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(context, port)  # signed by a CA it was not given
    env = config.libpq_environment()
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == str(certificates / "ca.pem")
    assert "PGSSLCERT" not in env


async def test_prisma_default_accepts_any_server_certificate(certificates: Path) -> None:
    """sslaccept=accept_invalid_certs, Prisma's default: TLS, nothing verified."""
    config = parse_database_url(url(certificates, "sslmode=require&sslcert={dir}/ca.pem"))

    assert ssl_context(config) == "require"
    explicit = parse_database_url(
        url(certificates, "sslcert={dir}/ca.pem&sslidentity={dir}/client.p12")
        + f"&sslpassword={P12_PASSWORD}&sslaccept=accept_invalid_certs"
    )
    context = ssl_context(explicit)
    assert context.verify_mode == ssl.CERT_NONE
    async with tls_server(certificates, "other-server") as port:
        assert await handshake(context, port, host="db.example.com") == "coursehub-client"
    env = config.libpq_environment()
    assert env["PGSSLMODE"] == "require"
    assert "PGSSLROOTCERT" not in env and "PGSSLCERT" not in env


async def test_prisma_sslidentity_is_the_client_certificate(certificates: Path) -> None:
    config = parse_database_url(
        url(certificates, "sslidentity={dir}/client.p12&sslaccept=strict&sslcert={dir}/ca.pem")
        + f"&sslpassword={P12_PASSWORD}"
    )

    async with tls_server(certificates) as port:
        assert await handshake(ssl_context(config), port) == "coursehub-client"
        # The client tools get the certificate and the key as PEM files only this user
        # can read: the server sees the same client.
        env = config.libpq_environment()
        assert env["PGSSLMODE"] == "verify-full"
        for name in ("PGSSLCERT", "PGSSLKEY"):
            assert stat.S_IMODE(os.stat(env[name]).st_mode) == 0o600
        tools = ssl.create_default_context(cafile=env["PGSSLROOTCERT"])
        tools.load_cert_chain(env["PGSSLCERT"], env["PGSSLKEY"])
        assert await handshake(tools, port) == "coursehub-client"


def test_a_wrong_pkcs12_password_is_one_line_naming_sslidentity(certificates: Path) -> None:
    config = parse_database_url(
        url(certificates, "sslmode=require&sslidentity={dir}/client.p12&sslpassword=wrong")
    )

    with pytest.raises(ConfigurationError) as raised:
        config.asyncpg_connect_kwargs()

    message = str(raised.value)
    assert message.startswith("DATABASE_URL parameter sslidentity:")
    assert "sslpassword" in message and "\n" not in message


async def test_a_libpq_url_keeps_libpqs_meanings(certificates: Path) -> None:
    """With sslkey, sslcert is the client's certificate and sslrootcert the CA; the tools,
    which cannot be given the key's password, get a decrypted copy of the key."""
    config = parse_database_url(
        url(
            certificates,
            "sslmode=verify-full&sslrootcert={dir}/ca.pem&sslcert={dir}/client.pem"
            "&sslkey={dir}/client-encrypted.key",
        )
        + f"&sslpassword={KEY_PASSWORD}"
    )

    context = ssl_context(config)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    async with tls_server(certificates) as port:
        assert await handshake(context, port) == "coursehub-client"
        env = config.libpq_environment()
        assert (env["PGSSLMODE"], env["PGSSLCERT"]) == (
            "verify-full",
            str(certificates / "client.pem"),
        )
        assert env["PGSSLROOTCERT"] == str(certificates / "ca.pem")
        assert "ENCRYPTED" not in Path(env["PGSSLKEY"]).read_text()
        tools = ssl.create_default_context(cafile=env["PGSSLROOTCERT"])
        tools.load_cert_chain(env["PGSSLCERT"], env["PGSSLKEY"])
        assert await handshake(tools, port) == "coursehub-client"


def test_relative_certificate_paths_are_taken_from_the_current_directory(
    certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(certificates)

    config = parse_database_url("postgresql://u@h/db?sslcert=ca.pem&sslaccept=strict")

    assert config.sslcert == str(certificates / "ca.pem")
    assert config.libpq_environment()["PGSSLROOTCERT"] == str(certificates / "ca.pem")
    with pytest.raises(ConfigurationError, match="taken from the current directory"):
        parse_database_url("postgresql://u@h/db?sslcert=prisma/ca.pem")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("sslidentity={dir}/client.p12&sslkey={dir}/client.key&sslcert={dir}/client.pem",
         "sslidentity and sslkey both give a client certificate"),
        ("sslcert={dir}/ca.pem&sslrootcert={dir}/ca.pem", "both give the CA certificate"),
        ("sslkey={dir}/client.key", "sslkey needs sslcert"),
        ("sslaccept=sometimes", "sslaccept='sometimes' must be one of"),
        ("sslaccept=accept_invalid_certs&sslmode=verify-full", "disagree"),
        ("sslrootcert={dir}/no-such.pem", "parameter sslrootcert: no such file"),
    ],
)  # fmt: skip
def test_contradicting_or_missing_tls_settings_are_refused(
    certificates: Path, query: str, says: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url(url(certificates, query))

    assert says in str(raised.value)


def test_the_tls_settings_survive_to_url(certificates: Path) -> None:
    """`to_url` hands the URL to a child process (the benchmark's server)."""
    config = parse_database_url(
        url(certificates, "sslidentity={dir}/client.p12&sslcert={dir}/ca.pem&sslaccept=strict")
        + f"&sslpassword={P12_PASSWORD}&sslmode=require"
    )

    assert parse_database_url(config.to_url()) == config
