"""Placeholder: filled in by its issue."""
import typer


def recommend() -> None:
    """Not built yet."""
    raise typer.Exit(2)
