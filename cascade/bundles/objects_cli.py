"""``cascade objects cat|sync``: read published bundles from s3:// or file:// (k8s model-sync)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade.console import cli_errors

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("cat")
def cat(url: Annotated[str, typer.Argument(help="s3://BUCKET/KEY or file:///PATH")]) -> None:
    """Write one object's bytes to stdout (e.g. a publish location's LATEST)."""
    from cascade.bundles.objects import read_object

    with cli_errors():
        data = read_object(url)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@app.command("sync")
def sync(
    url: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX/ or file:///DIR/ (a folder)")],
    dest: Annotated[Path, typer.Argument(help="Local folder.")],
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Relative paths (glob) to skip (repeatable).")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove local files the prefix does not have.")] = False,
) -> None:
    """Download a prefix into a folder (files already there with the same size are kept)."""
    from cascade.bundles.objects import sync_down

    with cli_errors():
        result = sync_down(url, dest, list(exclude or []), delete=delete)
    typer.echo(f"{url} -> {dest}: {len(result.downloaded)} downloaded, {result.skipped} unchanged, "
               f"{len(result.deleted)} deleted", err=True)
