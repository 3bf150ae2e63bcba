"""The catalogue's full-text search and the indexes behind every list order.

- `course_search_document(title, description, features)`: the English tsvector of a
  course (title weighted A, description B, features C). `array_to_string` is only
  STABLE, so an index cannot call it directly; this wrapper is declared IMMUTABLE,
  which is true for a fixed text-search configuration. Its name in the index and
  in the catalogue's queries must match exactly for PostgreSQL to use the index.
- A GIN index over that document serves `q`.
- btree indexes ending in `id` serve each sort order with keyset pagination, for
  the public list (filtering `isPublished` on the fly: nearly every course is
  published) and the admins' list with drafts alike: newest, price, title.
- `Course_published_category_createdAt_id_idx` (partial): the hottest page of all,
  one category's published courses newest first, read straight off the index; it
  also counts `GET /categories`.
- `Course_featured_createdAt_id_idx` (partial): featured courses are few, so the
  featured filter would otherwise scan the table for them.

No column is added: the physical schema stays Prisma's.

Revision ID: 0003_catalogue_indexes
Revises: 0002_added_indexes
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_catalogue_indexes"
down_revision: str | None = "0002_added_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_FUNCTION = """
CREATE OR REPLACE FUNCTION course_search_document(title text, description text, features text[])
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT setweight(pg_catalog.to_tsvector('pg_catalog.english', coalesce(title, '')), 'A')
        || setweight(pg_catalog.to_tsvector('pg_catalog.english', coalesce(description, '')), 'B')
        || setweight(
            pg_catalog.to_tsvector(
                'pg_catalog.english', pg_catalog.array_to_string(coalesce(features, '{}'), ' ')
            ),
            'C'
        )
$$
"""

INDEXES = (
    (
        "Course_search_idx",
        '"Course" USING gin (course_search_document("title", "description", "features"))',
    ),
    ("Course_createdAt_id_idx", '"Course"("createdAt", "id")'),
    ("Course_price_id_idx", '"Course"("price", "id")'),
    ("Course_title_id_idx", '"Course"("title", "id")'),
    (
        "Course_published_category_createdAt_id_idx",
        '"Course"("category", "createdAt", "id") WHERE "isPublished"',
    ),
    ("Course_featured_createdAt_id_idx", '"Course"("createdAt", "id") WHERE "isFeatured"'),
)


def upgrade() -> None:
    op.execute(SEARCH_FUNCTION)
    for name, target in INDEXES:
        op.execute(f'CREATE INDEX "{name}" ON {target}')


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
    op.execute("DROP FUNCTION IF EXISTS course_search_document(text, text, text[])")
