"""``cascade features generate|apply|materialize``: the Feast feature repo of a dataset.

All three are idempotent and skip work whose inputs did not change (``--force`` re-runs apply and
materialize). Errors print in red on stderr and exit 2.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cascade.console import fail

from cascade.errors import CascadeError

app = typer.Typer(no_args_is_help=True)


class OnlineStore(str, Enum):
    sqlite = "sqlite"
    redis = "redis"




@app.command("generate")
def generate(
    data: Path = typer.Option(..., "--data", help="Canonical dataset folder (dataset.json + Parquet)."),
    repo: Path = typer.Option(..., "--repo", help="Feature repo folder to write (replaced if stale)."),
    online_store: OnlineStore = typer.Option(OnlineStore.sqlite, "--online-store", help="Online store kind."),
    redis_connection: Optional[str] = typer.Option(
        None, "--redis-connection",
        help="Redis host:port[,ssl=true][,db=N] (with --online-store redis; ${ENV} allowed). No literal password: it is read at run time from CASCADE_REDIS_PASSWORD or CASCADE_REDIS_PASSWORD_FILE.",
    ),
) -> None:
    """Write feature_store.yaml, definitions.py and the source Parquet files for a dataset."""
    from cascade.features.repo import generate_feature_repo

    try:
        result = generate_feature_repo(data, repo, online_store.value, redis_connection)
    except CascadeError as error:
        fail(error)
    typer.echo(
        f"feature repo {result.root}: {result.n_users} users ({len(result.user.names)} features), "
        f"{result.n_items} items ({len(result.item.names)} features), online store {result.online_store}"
    )


@app.command("apply")
def apply_command(
    repo: Path = typer.Option(..., "--repo", help="Feature repo folder (from `features generate`)."),
    force: bool = typer.Option(False, "--force", help="Apply even if the definitions did not change."),
) -> None:
    """Register entities and feature views in the repo's registry (feast apply)."""
    from cascade.features.store import apply

    try:
        result = apply(repo, skip_if_fresh=not force)
    except CascadeError as error:
        fail(error)
    state = "unchanged, skipped" if result.skipped else "applied"
    typer.echo(f"feature views {', '.join(result.views)}: {state}")


@app.command("materialize")
def materialize_command(
    repo: Path = typer.Option(..., "--repo", help="Feature repo folder (from `features generate`)."),
    force: bool = typer.Option(False, "--force", help="Materialize even if the sources did not change."),
) -> None:
    """Load both feature views into the online store and publish a new item snapshot."""
    from cascade.features.store import materialize

    try:
        result = materialize(repo, skip_if_fresh=not force)
    except CascadeError as error:
        fail(error)
    state = " (unchanged, skipped)" if result.skipped else ""
    for view, rows in result.rows.items():
        typer.echo(f"{view}: {rows} rows{state}")
    typer.echo(f"item snapshot: version {result.snapshot_version} ({result.snapshot_rows} items)")
