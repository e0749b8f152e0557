"""``cascade events push`` / ``cascade events ingest``: interaction events into a running server."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cascade.console import cli_errors

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


@app.command("push")
def push(
    user: int = typer.Option(..., "--user", help="raw user id (unknown users are created)"),
    item: list[int] = typer.Option(..., "--item", help="raw item id; repeat for several events"),
    timestamp: Optional[list[int]] = typer.Option(None, "--timestamp", help="unix seconds per --item (default: server clock)"),
    weight: Optional[list[float]] = typer.Option(None, "--weight", help="weight per --item (default 1.0)"),
    url: str = typer.Option("127.0.0.1:8001", "--url", help="Triton gRPC HOST:PORT"),
) -> None:
    """Send one user's events to the `interactions` model (logged, then applied to the user's features)."""
    from cascade.events.client import EventsClient

    with cli_errors(), EventsClient(url) as client:
        result = client.push(user, item, timestamp or None, weight or None)
    typer.echo(f"user {user}: accepted {result.accepted}, duplicates {result.duplicates}, "
               f"n_interactions {result.n_interactions}")


@app.command("ingest")
def ingest_file(
    file: Path = typer.Argument(..., help="CSV or Parquet with user_id, item_id[, timestamp][, weight]"),
    url: str = typer.Option("127.0.0.1:8001", "--url", help="Triton gRPC HOST:PORT"),
    batch_size: int = typer.Option(500, "--batch-size", help="events per request (one user per request)"),
) -> None:
    """Send a file of events in batches (file order; safe to re-run: duplicates are dropped)."""
    from cascade.events.client import EventsClient, ingest, read_events
    from cascade.progress import progress_bar

    with cli_errors():
        frame = read_events(file)
        with EventsClient(url) as client, progress_bar(total=len(frame), desc="events", unit="event") as bar:
            result = ingest(client, frame, batch_size, progress=bar.update)
    typer.echo(f"{file}: {len(frame)} events, accepted {result.accepted}, duplicates {result.duplicates}")
