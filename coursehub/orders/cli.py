import typer

orders_app = typer.Typer(no_args_is_help=True)
