"""Placeholder: filled in by its issue."""
import typer


def export() -> None:
    """Not built yet."""
    raise typer.Exit(2)
