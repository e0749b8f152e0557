"""CLI helpers: print a CascadeError the same way everywhere and exit non-zero."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, NoReturn

import typer
from rich.console import Console

from cascade.errors import CascadeError

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from cascade.client import Recommendations

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


def recommendation_table(answer: "Recommendations", title: str) -> "Table":
    """A ranked table of one answer; cold-start answers carry a caption saying so."""
    from rich.table import Table

    caption = "unknown user: cold start, popular items, degraded=True" if answer.degraded else None
    table = Table(title=title, caption=caption, title_justify="left")
    for column in ("rank", "item_id", "score"):
        table.add_column(column, justify="right")
    for rank, (item, score) in enumerate(zip(answer.item_ids, answer.scores), start=1):
        table.add_row(str(rank), str(item), f"{score:.4f}")
    return table
