"""A narrow index behind GET /categories.

`Course_published_category_idx` (partial, on published courses): the categories of
published courses with their counts are read off it by an index-only scan in
category order. The wider `Course_published_category_createdAt_id_idx` (0003) lost
to a sequential scan of the table, being too wide to be cheaper.

Revision ID: 0007_published_category_index
Revises: 0006_checkout_indexes
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_published_category_index"
down_revision: str | None = "0006_checkout_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        'CREATE INDEX IF NOT EXISTS "Course_published_category_idx" '
        'ON "Course" ("category") WHERE "isPublished"'
    )


def downgrade() -> None:
    op.execute('DROP INDEX IF EXISTS "Course_published_category_idx"')
