"""An index behind finding a new course's free slug.

`Course_slug_pattern_idx` (`text_pattern_ops`: byte order whatever the database's
collation): creating a course without a slug looks up its title's base and every
`base-N` taken (catalog/repository.py `taken_slugs`), as a range `base-` ≤ slug < `base.`
in byte order. `Course_slug_key` (Prisma's, in the collation's order) cannot serve a
prefix under a collation other than C, so that lookup read the whole table.

Revision ID: 0009_course_slug_prefix_index
Revises: 0008_refund_due_index
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_course_slug_prefix_index"
down_revision: str | None = "0008_refund_due_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        'CREATE INDEX IF NOT EXISTS "Course_slug_pattern_idx" ON "Course" ("slug" text_pattern_ops)'
    )


def downgrade() -> None:
    op.execute('DROP INDEX IF EXISTS "Course_slug_pattern_idx"')
