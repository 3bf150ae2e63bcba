"""Course categories and levels in the form the store writes and filters by.

The store stores a category trimmed and in lower case, and a level as one of `beginner`,
`intermediate`, `advanced`, `all-levels` (catalog/schemas.py), and its filters compare
exactly (an index serves them). A database carried over from the Node app may hold
`Web Development` or `Beginner`: listed by GET /categories, yet found by no filter. This
brings them to the store's form once: categories trimmed and lower-cased (two spellings
of one category become one), levels mapped when they name one of the four (`All Levels`
→ `all-levels`); any other level is left as it is. Data only: the downgrade keeps the
new form.

Revision ID: 0011_course_vocabulary
Revises: 0010_demote_anonymised_admins
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_course_vocabulary"
down_revision: str | None = "0010_demote_anonymised_admins"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = "('beginner', 'intermediate', 'advanced', 'all-levels')"
LEVEL_FORM = r"""lower(regexp_replace(btrim("level"), '[\s_-]+', '-', 'g'))"""


def upgrade() -> None:
    op.execute(
        """UPDATE "Course" SET "category" = lower(btrim("category")) """
        """WHERE "category" <> lower(btrim("category")) AND btrim("category") <> ''"""
    )
    op.execute(
        f"""UPDATE "Course" SET "level" = {LEVEL_FORM} """
        f"""WHERE "level" <> {LEVEL_FORM} AND {LEVEL_FORM} IN {LEVELS}"""
    )


def downgrade() -> None:
    pass  # the Node app's spellings are not kept, nor needed: it reads these too
