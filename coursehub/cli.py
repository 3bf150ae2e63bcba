"""The `coursehub` command."""

from __future__ import annotations

import os

import typer

from coursehub.bench.cli import bench_app
from coursehub.core.console import CommandFailed, err_console, report_failure, target_database
from coursehub.core.errors import StoreError
from coursehub.db.cli import db_app
from coursehub.orders.cli import orders_app
from coursehub.payments.cli import payments_app
from coursehub.users.cli import users_app

app = typer.Typer(
    name="coursehub",
    help="CourseHub: the backend of an online-course store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users", help="Manage accounts.")
app.add_typer(orders_app, name="orders", help="Orders: expire stale pending orders.")
app.add_typer(payments_app, name="payments", help="Payments: simulate the gateway's webhook.")
app.add_typer(bench_app, name="bench", help="Benchmark the store against its plain-SQL floor.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Worker processes (production: one per core)."),
    reload: bool = typer.Option(False, help="Restart on code changes (development)."),
) -> None:
    """Serve the HTTP API (under /api/v1; docs at /docs)."""
    import uvicorn

    from coursehub.app import check_production_settings
    from coursehub.core.settings import get_settings

    # Refuse here, in one line, rather than in every worker with a traceback.
    check_production_settings(get_settings())
    resolved = target_database()
    if resolved.embedded:
        # Workers and reloads must reach the same embedded server without each
        # resolving it again.
        os.environ.setdefault("DATABASE_URL", resolved.config.to_url())
    err_console.print(f"Serving CourseHub on http://{host}:{port} (API docs: /docs)")
    uvicorn.run(
        "coursehub.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if not reload else None,
        reload=reload,
        log_level="info",
        proxy_headers=True,
    )


def main() -> None:
    try:
        app()
    except CommandFailed as exc:
        report_failure(exc)
    except StoreError as exc:  # bad settings, found before a command could turn them into one
        report_failure(CommandFailed(str(exc)))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise SystemExit(130) from None
    except SystemExit as exc:
        # Typer turns a KeyboardInterrupt into a silent exit 130 (`Exit(130) from` it, which
        # its caller turns into this SystemExit); say why the command stopped.
        exit_ = exc.__context__
        if exc.code == 130 and isinstance(getattr(exit_, "__cause__", None), KeyboardInterrupt):
            err_console.print("interrupted")
        raise


if __name__ == "__main__":
    main()
