"""Placeholder: filled in by its issue."""
import typer


def demo() -> None:
    """Not built yet."""
    raise typer.Exit(2)
