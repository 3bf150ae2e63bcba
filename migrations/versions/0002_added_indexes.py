"""Indexes DATABASE.md lacks: every foreign key, the catalogue and order history.

PostgreSQL does not index foreign-key columns by itself, so each one that is not
the leading column of a unique index gets one; the public catalogue (published,
newest first) and a user's order history get theirs. Names are Prisma's, as
schema.prisma declares them.

`IF NOT EXISTS`: a database adopted from the Node app may already have some or
all of them, if it was migrated from schema.prisma rather than DATABASE.md.

Revision ID: 0002_added_indexes
Revises: 0001_prisma_baseline
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_added_indexes"
down_revision: str | None = "0001_prisma_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("Course_isPublished_createdAt_idx", '"Course"("isPublished", "createdAt")'),
    ("Course_category_idx", '"Course"("category")'),
    ("CourseEnrollment_courseId_idx", '"CourseEnrollment"("courseId")'),
    ("CourseEnrollment_orderId_idx", '"CourseEnrollment"("orderId")'),
    ("Order_userId_createdAt_idx", '"Order"("userId", "createdAt")'),
    ("Order_status_idx", '"Order"("status")'),
    ("OrderItem_courseId_idx", '"OrderItem"("courseId")'),
    ("CouponUsage_couponId_idx", '"CouponUsage"("couponId")'),
    ("CouponUsage_userId_idx", '"CouponUsage"("userId")'),
)


def upgrade() -> None:
    for name, target in INDEXES:
        op.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON {target}')


def downgrade() -> None:
    for name, _ in INDEXES:
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
