"""The `coursehub` command's entry point (pyproject.toml `[project.scripts]`).

It imports the CLI inside the handler that turns a Ctrl-C into one line: importing it loads
FastAPI, SQLAlchemy and every model, a second or so on a small machine, and a Ctrl-C in
that second, before `coursehub.cli.main` could catch anything, printed a traceback. This
module imports nothing itself, so the window left is Python's own start-up.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from coursehub.cli import main as run_cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    run_cli()
