"""The installed package carries what it runs: the migrations ship inside it as
`coursehub.migrations` (pyproject.toml maps the repository's migrations/ there), so a wheel
install can `coursehub db migrate`, not only the editable install the scripts make."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from coursehub.bench import suite
from coursehub.bench.suite import FloorMissing, SuiteOptions, run_suite
from coursehub.core.dburl import DatabaseConfig
from coursehub.db.migrations import MIGRATIONS_DIRECTORY

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    """The list is explicit (a mapped package defeats `packages.find`): a new domain package
    missing from it would be left out of every wheel."""
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "coursehub").rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == on_disk | {"coursehub.migrations"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"coursehub.migrations": "migrations"}


def test_the_migrations_are_found_where_the_install_put_them() -> None:
    assert MIGRATIONS_DIRECTORY == ROOT / "migrations"  # the editable install: the source tree
    assert (MIGRATIONS_DIRECTORY / "env.py").is_file()
    assert (MIGRATIONS_DIRECTORY / "script.py.mako").is_file()


# What a clean checkout does not hold: setuptools packs whatever is in build/lib, so a
# wheel built in a used tree can carry files deleted since (a stale migration would give
# Alembic two heads). The wheel is built from a copy without them.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".coursehub"
)


def test_a_wheel_carries_exactly_the_migrations(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("coursehub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"coursehub/migrations/{path.relative_to(MIGRATIONS_DIRECTORY).as_posix()}"
        for path in MIGRATIONS_DIRECTORY.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"coursehub/migrations/env.py", "coursehub/migrations/script.py.mako"} <= expected
    assert any(name.startswith("coursehub/migrations/versions/0001_") for name in expected)
    assert {name for name in names if name.startswith("coursehub/migrations/")} == expected
    assert not any(name.startswith(("migrations/", "benchmarks/", "tests/")) for name in names)


def test_the_bench_says_it_needs_a_source_checkout_before_making_a_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under a wheel install benchmarks/floor.py is not there: one clear error, and no scratch
    database made for nothing (the server here does not even exist)."""
    monkeypatch.setattr(suite, "FLOOR_PATH", tmp_path / "benchmarks" / "floor.py")
    nowhere = DatabaseConfig(user="u", password=None, host="/nonexistent", port=1, database="d")
    with pytest.raises(FloorMissing, match="source checkout"):
        run_suite(nowhere, SuiteOptions(database_name="coursehub_bench_x"))
