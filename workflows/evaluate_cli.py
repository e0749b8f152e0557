"""Placeholder: filled in by its issue."""
import typer


def evaluate() -> None:
    """Not built yet."""
    raise typer.Exit(2)
