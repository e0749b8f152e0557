"""``cascade export``: assemble a complete, versioned model repository for a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cascade.console import cli_errors, console


def export(
    data: Path = typer.Option(..., "--data", help="Dataset folder (cascade data generate/import)."),
    out: Path = typer.Option(..., "--out", help="Export folder to create or replace."),
    artifacts: Optional[Path] = typer.Option(None, help="Trained artifacts (default: train or reuse the cached ones)."),
    n_candidates: int = typer.Option(300, "--n-candidates", help="Retrieval candidates per request."),
    rules: Optional[Path] = typer.Option(None, help="Business rules YAML (default: the shipped one)."),
    online_store: str = typer.Option("sqlite", help="Feast online store: sqlite or redis."),
    redis_connection: Optional[str] = typer.Option(None, help="host:port[,ssl=true][,db=N] for redis; the password comes at run time from CASCADE_REDIS_PASSWORD(_FILE), never from here."),
    force: bool = typer.Option(False, help="Rebuild even when the inputs did not change."),
    device: str = typer.Option("cpu", "--device", help="cpu or gpu: where the GPU-capable stages (ranking, retrieval) run."),
    allow_cpu_fallback: bool = typer.Option(
        False, "--allow-cpu-fallback", help="--device gpu only: a stage without a usable GPU runs on the CPU (logged, counted) instead of failing to load."),
) -> None:
    """Train if needed, materialize Feast, and write EXPORT/{model_repository,artifacts,feature_repo,export.json}."""
    from cascade.workflows.export import export_repository

    with cli_errors():
        result = export_repository(
            data, out, artifacts_dir=artifacts, n_candidates=n_candidates, rules_file=rules,
            online_store=online_store, redis_connection=redis_connection, force=force,
            device=device, allow_cpu_fallback=allow_cpu_fallback,
        )
    state = "up to date" if result.reused else "written"
    console.print(f"export [bold]{result.manifest.version}[/bold] {state}: {result.root}")
    console.print(f"serve it with: cascade serve {result.root}")
