"""Indexes behind sign-in, sign-up checks and the admins' user list.

- `User_email_lower_idx`, `User_username_lower_idx`: the store compares emails and
  usernames case-insensitively (`lower(...)`), because rows carried over from the
  Node app may be mixed-case while everything new is written lower-case. They serve
  sign-in, the "already taken" checks, and the admins' prefix search
  (`text_pattern_ops`, so `LIKE 'prefix%'` uses them whatever the collation). Not
  unique: a Node database may hold two rows differing only in case, and adopting
  it must not fail; new rows are lower-case, so `User_email_key` and
  `User_username_key` already keep them unique.
- `User_createdAt_id_idx`, `User_role_createdAt_id_idx`: GET /admin/users newest
  first (keyset on createdAt then id), unfiltered and narrowed to one role.

No column is added: the physical schema stays Prisma's.

Revision ID: 0005_user_indexes
Revises: 0004_admin_order_indexes
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_user_indexes"
down_revision: str | None = "0004_admin_order_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("User_email_lower_idx", '"User" (lower("email") text_pattern_ops)'),
    ("User_username_lower_idx", '"User" (lower("username") text_pattern_ops)'),
    ("User_createdAt_id_idx", '"User"("createdAt", "id")'),
    ("User_role_createdAt_id_idx", '"User"("role", "createdAt", "id")'),
)


def upgrade() -> None:
    for name, target in INDEXES:
        op.execute(f'CREATE INDEX "{name}" ON {target}')


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
