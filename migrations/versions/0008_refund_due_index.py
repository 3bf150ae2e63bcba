"""An index behind the admins' list of late captures still to refund.

`Order_refundDue_createdAt_id_idx` (partial, on orders whose metadata says
`refundDue: true`): GET /admin/orders?refund_due=true walks it newest first. The gateway
captured these orders' payments after they were cancelled or expired
(payments/service.py); they are few, so the index is small whatever the table's size.

Revision ID: 0008_refund_due_index
Revises: 0007_published_category_index
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_refund_due_index"
down_revision: str | None = "0007_published_category_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        'CREATE INDEX IF NOT EXISTS "Order_refundDue_createdAt_id_idx" '
        """ON "Order" ("createdAt", "id") WHERE ("metadata" ->> 'refundDue') = 'true'"""
    )


def downgrade() -> None:
    op.execute('DROP INDEX IF EXISTS "Order_refundDue_createdAt_id_idx"')
