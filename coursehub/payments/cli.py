import typer

payments_app = typer.Typer(no_args_is_help=True)
