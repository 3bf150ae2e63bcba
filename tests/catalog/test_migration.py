"""Migrations 0003, 0007 and 0009: the models declare what they create (no drift), and downgrading
below them removes it all."""

from __future__ import annotations

import asyncpg

from coursehub.core.dburl import DatabaseConfig
from coursehub.db import migrations

CATALOGUE_INDEXES = {
    "Course_search_idx",
    "Course_createdAt_id_idx",
    "Course_price_id_idx",
    "Course_title_id_idx",
    "Course_published_category_createdAt_id_idx",
    "Course_featured_createdAt_id_idx",
    "Course_published_category_idx",  # 0007
    "Course_slug_pattern_idx",  # 0009
}


async def catalogue_objects(config: DatabaseConfig) -> tuple[set[str], set[str]]:
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        indexes = {
            r[0]
            for r in await connection.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'Course'"
            )
        }
        functions = {
            r[0]
            for r in await connection.fetch(
                "SELECT proname FROM pg_proc WHERE proname = 'course_search_document'"
            )
        }
    finally:
        await connection.close()
    return indexes, functions


async def test_upgrade_leaves_no_drift_and_downgrade_removes_everything(
    scratch_db: DatabaseConfig,
) -> None:
    await migrations.migrate(scratch_db)
    indexes, functions = await catalogue_objects(scratch_db)
    state = await migrations.status(scratch_db)

    assert indexes >= CATALOGUE_INDEXES
    assert functions == {"course_search_document"}
    assert "0003_catalogue_indexes" in state.applied
    assert state.drift == []

    await migrations.downgrade(scratch_db, "0002_added_indexes")
    indexes_after, functions_after = await catalogue_objects(scratch_db)

    assert indexes_after == indexes - CATALOGUE_INDEXES
    assert functions_after == set()
    await migrations.migrate(scratch_db)
    assert await catalogue_objects(scratch_db) == (indexes, functions)


async def test_0011_brings_node_categories_and_levels_to_the_stores_form(
    scratch_db: DatabaseConfig,
) -> None:
    """Node-era `Web Development` / `All Levels` are listed but found by no filter (the
    store compares its own lower-case form exactly): 0011 rewrites them once."""
    await migrations.migrate(scratch_db, "0010_demote_anonymised_admins")
    connection = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    rows = {
        "web": (" Web Development ", "Beginner"),
        "all": ("web development", "All Levels"),
        "odd": ("Design", "Expert"),  # not one of the four: left as it is
        "ok": ("design", "all-levels"),
    }
    try:
        for course_id, (category, level) in rows.items():
            await connection.execute(
                'INSERT INTO "Course" (id, title, slug, duration, price, category, level, '
                '"createdBy", "updatedAt") VALUES ($1, $1, $1, 60, 10, $2, $3, $4, now())',
                course_id,
                category,
                level,
                "node-admin",
            )
        await migrations.migrate(scratch_db)
        stored = {
            r["id"]: (r["category"], r["level"])
            for r in await connection.fetch('SELECT id, category, level FROM "Course"')
        }
    finally:
        await connection.close()

    assert stored == {
        "web": ("web development", "beginner"),
        "all": ("web development", "all-levels"),
        "odd": ("design", "Expert"),
        "ok": ("design", "all-levels"),
    }
