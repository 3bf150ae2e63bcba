"""The suite's report as rich tables (the same figures `--json` writes)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _verdict(row: dict[str, Any]) -> str:
    if "meets_target" not in row:
        return ""
    return "[green]ok[/green]" if row["meets_target"] else "[red]missed[/red]"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def operations_table(report: dict[str, Any]) -> Table:
    table = Table(title="Ours (store code) against the floor (plain SQL on asyncpg)")
    for column in ("operation", "c"):
        table.add_column(column)
    for column in ("ops/s", "p50 ms", "p99 ms", "floor ops/s", "floor p50", "floor p99"):
        table.add_column(column, justify="right")
    table.add_column("CPU µs/op", justify="right")
    table.add_column("floor CPU", justify="right")
    table.add_column("p50 ×floor", justify="right")
    table.add_column("ops/s ×floor", justify="right")
    table.add_column("target")
    for row in report["operations"]:
        ours, floor = row["ours"], row["floor"]
        errors = ours["errors"] + floor["errors"]
        table.add_row(
            row["operation"] + (f" [red]({errors} errors)[/red]" if errors else ""),
            str(row["concurrency"]),
            f"{ours['ops_per_s']:.0f}",
            f"{ours['p50_ms']:.2f}",
            f"{ours['p99_ms']:.2f}",
            f"{floor['ops_per_s']:.0f}",
            f"{floor['p50_ms']:.2f}",
            f"{floor['p99_ms']:.2f}",
            f"{ours['cpu_us_per_op']:.0f}",
            f"{floor['cpu_us_per_op']:.0f}",
            _ratio(row["latency_ratio"]),
            _ratio(row["throughput_ratio"]),
            _verdict(row),
        )
    return table


def contention_table(contention: dict[str, Any]) -> Table:
    table = Table(
        title=f"Checkout on one coupon against none, c={contention['concurrency']} "
        f"(target {contention['target']})"
    )
    table.add_column("")
    for column in ("coupon ops/s", "coupon p99", "no coupon ops/s", "no coupon p99", "ratio"):
        table.add_column(column, justify="right")
    labels = {
        "ours": "ours",
        "ours_own": "ours, a coupon each",
        "ours_limited": "ours, one limited coupon",
        "floor": "floor",
        "floor_locked": "floor, coupon row locked",
    }
    for side, label in labels.items():
        figures = contention[side]
        table.add_row(
            label,
            f"{figures['coupon']['ops_per_s']:.0f}",
            f"{figures['coupon']['p99_ms']:.2f}",
            f"{figures['no_coupon']['ops_per_s']:.0f}",
            f"{figures['no_coupon']['p99_ms']:.2f}",
            _ratio(figures["ratio"]),
        )
    return table


def http_table(http: dict[str, Any]) -> Table:
    server = http["server"]
    table = Table(
        title=f"HTTP: coursehub serve --workers {server['workers']} "
        f"(connection_limit={server['connection_limit']}, {server['environment']}), "
        f"{http['connections']} connections from {http['tool']}"
    )
    table.add_column("endpoint")
    for column in ("requests/s", "p50 ms", "p99 ms", "max ms", "requests", "errors"):
        table.add_column(column, justify="right")
    corrected = False
    for row in http["endpoints"]:
        mark = " [yellow]*[/yellow]" if row.get("stalls_corrected") else ""
        corrected = corrected or bool(mark)
        table.add_row(
            row["endpoint"],
            f"{row['requests_per_s']:.0f}",
            f"{row['p50_ms']:.2f}{mark}",
            f"{row['p99_ms']:.2f}{mark}",
            f"{row.get('max_ms', 0.0):.0f}",
            str(row["requests"]),
            f"[red]{row['errors']}[/red]" if row["errors"] else "0",
        )
    if corrected:
        table.caption = (
            "* includes the samples wrk adds for requests a stalled connection could not "
            "send (its coordinated-omission correction): a few requests stalled for up to "
            "the max; the percentiles describe clients that do not wait for each other"
        )
    return table


def print_report(report: dict[str, Any], console: Console) -> None:
    if not console.is_terminal:
        # Piped or redirected: wide enough that no column is cut.
        console = Console(file=console.file, width=180, highlight=False)
    machine = report["machine"]
    console.print(
        f"[bold]CourseHub benchmark[/bold]: {machine['nproc']} CPUs, "
        f"PostgreSQL {machine['postgresql']}, Python {machine['python']}, "
        f"{report['options']['seconds']} s per operation and side; "
        f"total {report['total_seconds']} s"
    )
    console.print(operations_table(report))
    if report["coupon_contention"]:
        console.print(contention_table(report["coupon_contention"]))
    if report["http"]:
        console.print(http_table(report["http"]))
