"""Indexes behind checkout's Idempotency-Key and the admins' coupon list.

- `Order_userId_idempotencyKey_key` (unique, partial, on an expression): a checkout
  sent with an `Idempotency-Key` header keeps the key in the order's `metadata`
  (`{"idempotencyKey": …}`); a retry finds that order through this index, and the
  unique constraint is the last word should two retries ever race past the
  checkout's per-user lock. Orders without a key (every order the Node app made)
  are outside the index, so adopting a Node database cannot violate it.
- `Coupon_createdAt_id_idx`: GET /admin/coupons, newest first, keyset on
  createdAt then id.

No column is added: the physical schema stays Prisma's.

Revision ID: 0006_checkout_indexes
Revises: 0005_user_indexes
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_checkout_indexes"
down_revision: str | None = "0005_user_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    (
        "Order_userId_idempotencyKey_key",
        "UNIQUE INDEX",
        """"Order"("userId", ("metadata" ->> 'idempotencyKey'))"""
        """ WHERE ("metadata" ->> 'idempotencyKey') IS NOT NULL""",
    ),
    ("Coupon_createdAt_id_idx", "INDEX", '"Coupon"("createdAt", "id")'),
)


def upgrade() -> None:
    for name, kind, target in INDEXES:
        op.execute(f'CREATE {kind} "{name}" ON {target}')


def downgrade() -> None:
    for name, _, _ in reversed(INDEXES):
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
