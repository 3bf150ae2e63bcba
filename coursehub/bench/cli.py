"""`coursehub bench`: run ../shared/bench/WORKLOAD.md against the plain-SQL floor."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from coursehub.bench.fixture import DEFAULT_DATABASE_NAME, SMOKE_SIZE, FixtureSize
from coursehub.bench.ops import OPERATIONS
from coursehub.bench.report import print_report
from coursehub.bench.suite import FloorMissing, SuiteOptions, check_floor, run_suite
from coursehub.core.console import console, err_console, fail, one_line_errors, run
from coursehub.core.database import check_connection, resolve_database
from coursehub.core.settings import get_settings

bench_app = typer.Typer(no_args_is_help=False, invoke_without_command=True)


def check_report_path(json_file: Path) -> None:
    """Refuse, in one line and before the run, a --json path the report could not be
    written to: found after the run, the failure lost the whole report."""
    try:
        if json_file.is_dir():
            fail(f"--json {json_file}: is a directory; name the report's file")
        parent = json_file.parent
        if not parent.exists():
            fail(f"--json {json_file}: directory {parent} does not exist")
        if not parent.is_dir():
            fail(f"--json {json_file}: {parent} is not a directory")
        # An existing file is overwritten (its own permission counts); a new one is made
        # in its directory (the directory's).
        writable = json_file if json_file.exists() else parent
        if not os.access(writable, os.W_OK) or not os.access(parent, os.X_OK):
            fail(f"--json {json_file}: cannot be written (permission denied)")
    except OSError as exc:  # a directory on the way that cannot be looked into, say
        fail(f"--json {json_file}: {exc.strerror or exc}")


def write_report(json_file: Path, report: dict[str, Any]) -> None:
    """The report as JSON; a failure (a full disk, the directory removed meanwhile) in
    one line, after the table that shows the same figures."""
    try:
        json_file.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        fail(f"could not write the report to {json_file}: {exc.strerror or exc}")
    err_console.print(f"Wrote {json_file}")


@bench_app.callback(invoke_without_command=True)
def bench(
    json_file: Path | None = typer.Option(
        None, "--json", help="Also write the report as JSON to this file."
    ),
    seconds: float = typer.Option(
        4.0, min=0.1, help="Measuring time per operation, concurrency and side (ours, floor)."
    ),
    http: bool = typer.Option(True, "--http/--no-http", help="Run the HTTP part."),
    http_seconds: float = typer.Option(8.0, min=1, help="Measuring time per HTTP endpoint."),
    smoke: bool = typer.Option(
        False, help="A quick check that everything runs: tiny fixture, 0.5 s per measurement."
    ),
    operation: list[str] = typer.Option(
        [], "--op", help=f"Run only these operations (repeatable): {', '.join(OPERATIONS)}."
    ),
    courses: int = typer.Option(2000, min=20, help="Courses in the fixture (WORKLOAD: 2,000)."),
    wrk: bool = typer.Option(
        True, "--wrk/--no-wrk", help="Load the HTTP part with wrk when it is installed."
    ),
    database: str = typer.Option(
        DEFAULT_DATABASE_NAME,
        help="Name of the scratch database made (and dropped) on DATABASE_URL's server.",
    ),
    keep: bool = typer.Option(False, help="Keep the bench database afterwards."),
) -> None:
    """Prepare the fixture in a scratch database, measure each operation through the
    store's code and as plain SQL at concurrency 1 and 16, then load the HTTP API."""
    unknown = [name for name in operation if name not in OPERATIONS]
    if unknown:
        fail(f"unknown operation(s) {', '.join(unknown)}; choose from {', '.join(OPERATIONS)}")
    if json_file is not None:
        check_report_path(json_file)  # before minutes of measuring, not after
    options = SuiteOptions(
        seconds=seconds,
        http=http,
        http_seconds=http_seconds,
        prefer_wrk=wrk,
        database_name=database,
        keep_database=keep,
        size=replace(FixtureSize(), courses=courses),
        operations=tuple(operation) or OPERATIONS,
    )
    if smoke:
        options = replace(
            options, seconds=0.5, warmup=0.1, http_seconds=1, http_warmup=1, size=SMOKE_SIZE
        )
    try:
        check_floor()  # before starting an embedded server for nothing
    except FloorMissing as exc:
        fail(str(exc))
    # The suite needs the server, not the configured database (it makes its own):
    # check the maintenance database, which every server has.
    with one_line_errors():
        resolved = resolve_database(get_settings())
    err_console.print(f"[dim]Using the server of {resolved.describe()}[/dim]")
    run(check_connection(resolved.config.with_database("postgres")))
    with one_line_errors():
        try:
            report = run_suite(
                resolved.config,
                options,
                progress=lambda message: err_console.print(f"[dim]… {message}[/dim]"),
            )
        except (ValueError, RuntimeError) as exc:  # a bench database not ours, another run's
            fail(str(exc))
    print_report(report, console)
    if json_file is not None:
        write_report(json_file, report)
