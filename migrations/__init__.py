"""The Alembic migrations, shipped in the package as `coursehub.migrations` (pyproject.toml)."""
