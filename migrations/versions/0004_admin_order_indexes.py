"""Indexes behind the admins' order list, the sales report and a learner's enrollments.

- `Order_createdAt_id_idx`: GET /admin/orders unfiltered (newest first, keyset on
  createdAt then id) and the sales report's date range.
- `Order_status_createdAt_id_idx`, `Order_paymentStatus_createdAt_id_idx`: the same
  list narrowed to one status or payment status, read straight off the index.
  (The user filter uses `Order_userId_createdAt_idx`; the coupon filter goes through
  `CouponUsage_couponId_idx`.)
- `CourseEnrollment_userId_createdAt_id_idx`: GET /me/enrollments, newest first.

No column is added: the physical schema stays Prisma's.

Revision ID: 0004_admin_order_indexes
Revises: 0003_catalogue_indexes
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_admin_order_indexes"
down_revision: str | None = "0003_catalogue_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("Order_createdAt_id_idx", '"Order"("createdAt", "id")'),
    ("Order_status_createdAt_id_idx", '"Order"("status", "createdAt", "id")'),
    ("Order_paymentStatus_createdAt_id_idx", '"Order"("paymentStatus", "createdAt", "id")'),
    (
        "CourseEnrollment_userId_createdAt_id_idx",
        '"CourseEnrollment"("userId", "createdAt", "id")',
    ),
)


def upgrade() -> None:
    for name, target in INDEXES:
        op.execute(f'CREATE INDEX "{name}" ON {target}')


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
