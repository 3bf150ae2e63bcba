"""Anonymised accounts are not admins.

An account removed while it had orders is anonymised, not deleted (users/service.py
`remove_account`): unusable email, username and password. Until now it kept its role, so
an anonymised admin still counted as one: the last admin anyone could sign in as could be
demoted or removed, and `coursehub db seed` took the anonymised account for the store's
admin and made none. Anonymising now sets the role to user; this demotes the accounts
anonymised before. Data only: the downgrade leaves them as they are (demoted).

Revision ID: 0010_demote_anonymised_admins
Revises: 0009_course_slug_prefix_index
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_demote_anonymised_admins"
down_revision: str | None = "0009_course_slug_prefix_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The marks `remove_account` leaves: core/security.py UNUSABLE_PASSWORD and the
    # `deleted-{id}@deleted.invalid` email (a hash can never be "!unusable").
    op.execute(
        """UPDATE "User" SET "role" = 'user', "updatedAt" = now() AT TIME ZONE 'UTC' """
        """WHERE "role" = 'admin' AND "password" = '!unusable' """
        """AND "email" = 'deleted-' || "id" || '@deleted.invalid'"""
    )


def downgrade() -> None:
    pass  # who was an admin before being anonymised is not kept, nor needed
