"""``cascade retrain``: continual training from an export + the interaction log."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cascade.console import cli_errors


def retrain(
    export: Path = typer.Option(..., "--export", help="the export to continue from (its weights, catalog, dataset)"),
    events: str = typer.Option(..., "--events", help="interaction log: folder or object-store URL"),
    out: Path = typer.Option(..., "--out", help="where to write the new export"),
    full: bool = typer.Option(False, "--full", help="train from scratch instead of warm-starting"),
    until: Optional[int] = typer.Option(None, "--until", help="only events with timestamp < UNTIL (unix s)"),
    warm_epochs: int = typer.Option(2, "--warm-epochs", min=1, help="epochs of a warm start"),
    data: Optional[Path] = typer.Option(None, "--data", help="the export's dataset, if not where the export recorded it"),
    work: Optional[Path] = typer.Option(None, "--work", help="work folder (the grown dataset lands in WORK/data)"),
) -> None:
    """Warm-start (or --full) both models on the new interactions, rebuild the index, write a new
    export. Release it through the bundles release gate (`cascade release`) where that exists."""
    import json
    from dataclasses import asdict

    from cascade.events.retrain import RetrainConfig, retrain as run

    with cli_errors():
        result = run(export, events, out, full=full, until=until, data_dir=data, work_dir=work,
                     config=RetrainConfig(warm_epochs=warm_epochs, progress=True), log=typer.echo)
    payload = asdict(result)
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in payload.items()}
    typer.echo(json.dumps(payload, indent=2))
