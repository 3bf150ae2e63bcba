"""Seeding: the demo data (idempotent) and a large dataset for benchmarks.

(Stub: being written; see issue 2.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coursehub.core.dburl import DatabaseConfig


@dataclass
class SeedReport:
    created: dict[str, int] = field(default_factory=dict)
    generated_admin_password: str | None = None


async def seed_demo_data(config: DatabaseConfig) -> SeedReport:
    raise NotImplementedError


def print_seed_report(report: SeedReport) -> None:
    raise NotImplementedError


async def seed_bulk_data(config: DatabaseConfig, *, users: int, courses: int, orders: int) -> None:
    raise NotImplementedError
