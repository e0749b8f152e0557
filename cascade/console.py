"""CLI helpers: print a CascadeError the same way everywhere and exit non-zero."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

import typer
from rich.console import Console

from cascade.errors import CascadeError

console = Console()
err_console = Console(stderr=True)


EXIT_ERROR = 2


def fail(error: CascadeError, exit_code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error``'s message in red on stderr and exit with ``exit_code``."""
    err_console.print(f"error: {error.message}", style="red", markup=False, highlight=False, soft_wrap=True)
    sys.stderr.flush()
    raise typer.Exit(code=exit_code)


@contextmanager
def cli_errors(exit_code: int = EXIT_ERROR) -> Iterator[None]:
    """Turn a CascadeError raised in the block into :func:`fail`."""
    try:
        yield
    except CascadeError as error:
        fail(error, exit_code)
