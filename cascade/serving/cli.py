"""Placeholder: filled in by its issue."""
import typer


def serve() -> None:
    """Not built yet."""
    raise typer.Exit(2)
