"""CLI helpers: print a CascadeError the same way everywhere and exit non-zero."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from cascade.errors import CascadeError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def cli_errors(exit_code: int = 2) -> Iterator[None]:
    """Turn a CascadeError into a red message on stderr and ``exit_code``."""
    try:
        yield
    except CascadeError as error:
        err_console.print(f"[red]error:[/red] {error.message}", highlight=False, soft_wrap=True)
        sys.stderr.flush()
        raise typer.Exit(code=exit_code) from None
