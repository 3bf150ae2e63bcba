"""Backup and restore over pg_dump / pg_restore. (Stub: being written; see issue 2.)"""

from __future__ import annotations

from pathlib import Path

from coursehub.core.dburl import DatabaseConfig


async def backup_database(config: DatabaseConfig, file: Path | None, *, plain: bool) -> Path:
    raise NotImplementedError


async def restore_database(config: DatabaseConfig, file: Path, *, force: bool) -> None:
    raise NotImplementedError
