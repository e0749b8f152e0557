"""``cascade items upsert``: add or update catalog items of an export without retraining."""

from __future__ import annotations

from pathlib import Path

import typer

from cascade.console import cli_errors

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


@app.command("upsert")
def upsert(
    file: Path = typer.Argument(..., help="CSV or Parquet: item_id + item attribute columns"),
    export: Path = typer.Option(..., "--export", help="the export whose catalog to change (served or not)"),
) -> None:
    """Add/update items: new items are embedded with the item tower and join the retrieval index;
    a running server picks them up within its refresh interval."""
    from cascade.events.items import upsert_items

    with cli_errors():
        result = upsert_items(export, file)
    typer.echo(f"added {len(result.added)}, updated {len(result.updated)}; index extension "
               f"{result.extension_version or '-'} ({result.embedded} items); snapshot {result.snapshot_version}")


@app.command("publish")
def publish(
    repo: Path = typer.Option(..., "--repo", help="feature repo folder"),
) -> None:
    """Materialize the item view and publish a new item snapshot only when the catalog changed
    (the scheduled job; the user view changes through events and retrains, not here)."""
    from cascade.events.items import publish_if_changed

    with cli_errors():
        result = publish_if_changed(repo)
    state = "published" if result.changed else "unchanged, nothing published"
    typer.echo(f"item snapshot {result.snapshot_version}: {state}")
