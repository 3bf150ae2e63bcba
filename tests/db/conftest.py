from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coursehub.core.database import drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig
from tests.conftest import scratch_database_name


@pytest.fixture
async def scratch_db(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A fresh, empty database of its own, dropped afterwards."""
    config = server.with_database(scratch_database_name("scratch"))
    await ensure_database_exists(config)
    yield config
    await drop_database(config)
