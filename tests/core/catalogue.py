"""Reading a database's physical schema from pg_catalog, to compare two databases."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from coursehub.core.dburl import DatabaseConfig


@dataclass(frozen=True)
class Catalogue:
    columns: dict[tuple[str, str], tuple[str, bool, str | None]]  # type, not null, default
    constraints: dict[str, tuple[str, str]]  # name -> (table, definition)
    indexes: dict[str, str]  # name -> definition
    enums: dict[str, list[str]]  # type -> labels in order


COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
"""
CONSTRAINTS = """
SELECT con.conname, c.relname, pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND con.contype <> 'n'  -- PostgreSQL 18 lists NOT NULL here too; columns cover it
"""
INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
ENUMS = """
SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
FROM pg_type t
JOIN pg_enum e ON e.enumtypid = t.oid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = current_schema()
GROUP BY t.typname
"""


async def read_catalogue(config: DatabaseConfig) -> Catalogue:
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        columns = {(r[0], r[1]): (r[2], r[3], r[4]) for r in await connection.fetch(COLUMNS)}
        constraints = {r[0]: (r[1], r[2]) for r in await connection.fetch(CONSTRAINTS)}
        indexes = {r[0]: r[1] for r in await connection.fetch(INDEXES)}
        enums = {r[0]: list(r[1]) for r in await connection.fetch(ENUMS)}
    finally:
        await connection.close()
    return Catalogue(columns=columns, constraints=constraints, indexes=indexes, enums=enums)


def missing_or_different(expected: Catalogue, actual: Catalogue) -> list[str]:
    """Every object of `expected` that `actual` lacks or has otherwise. Extra objects
    in `actual` (ours) are allowed."""
    problems: list[str] = []
    for kind in ("columns", "constraints", "indexes", "enums"):
        want: dict[object, object] = getattr(expected, kind)
        have: dict[object, object] = getattr(actual, kind)
        for name, definition in want.items():
            if name not in have:
                problems.append(f"{kind}: missing {name}: {definition}")
            elif have[name] != definition:
                problems.append(f"{kind}: {name} is {have[name]}, expected {definition}")
    return problems
