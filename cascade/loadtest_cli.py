"""Placeholder: filled in by its issue."""
import typer


def loadtest() -> None:
    """Not built yet."""
    raise typer.Exit(2)
