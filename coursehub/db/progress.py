"""Progress displays for the long database commands (bulk seed, backup, restore).

They draw on stderr, so stdout stays clean for what a command prints, and draw
nothing when stderr is not a terminal (CI logs, tests) beyond what the command
reports at the end.
"""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from coursehub.core.console import err_console


def rows_progress(*, enabled: bool = True) -> Progress:
    """A bar per table: rows written of rows planned, rate and time left."""
    return Progress(
        TextColumn("[bold]{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not (enabled and err_console.is_terminal),
    )


def bytes_progress(*, enabled: bool = True) -> Progress:
    """A spinner (or a bar, when the total is known) with bytes moved and what is being done."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not (enabled and err_console.is_terminal),
    )
