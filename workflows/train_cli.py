"""``cascade train``: fit the preprocessing workflow, train retrieval, build the index, train ranking
(one command, cached by input hash); ``cascade train retrieval`` / ``cascade train ranking`` for
finer control. torch/faiss/onnxruntime are imported inside the commands."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from cascade.errors import CascadeError

app = typer.Typer(no_args_is_help=False, invoke_without_command=True)

DEFAULT_THREADS = int(os.environ.get("CASCADE_TORCH_THREADS", "2"))
DEVICE_HELP = "cpu or cuda[:N]: where torch trains (cuda fails clearly without a usable GPU)"


def _check_device(device: str) -> None:
    """Fail before any data work when the device is not usable."""
    from cascade.workflows.train_retrieval import training_device

    training_device(device)


def _fail(error: CascadeError) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {error.message}", markup=True, highlight=False)
    raise typer.Exit(2)


def _config(epochs: Optional[int], ranking_epochs: Optional[int], batch_size: Optional[int], dim: Optional[int],
            threads: int, seed: int, progress: bool, device: str = "cpu") -> Any:
    from cascade.workflows.artifacts import TrainConfig

    config = TrainConfig()
    r, k = config.retrieval, config.ranking
    if epochs is not None:
        r.epochs = epochs
        k.epochs = ranking_epochs if ranking_epochs is not None else epochs
    elif ranking_epochs is not None:
        k.epochs = ranking_epochs
    if batch_size is not None:
        r.batch_size = batch_size
    if dim is not None:
        r.model.dim = dim
        r.model.item_embedding_dim = dim
    r.threads = k.threads = threads
    r.seed = k.seed = config.index.seed = seed
    r.progress = k.progress = progress
    r.device = k.device = device
    return config


def _summary_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("result")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _rows_from_summary(summary: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    secs = summary.get("seconds", {})
    if "retrieval" in summary:
        r = summary["retrieval"]
        key = next((k for k in r if k.startswith("val_recall@")), None)
        rows.append(("retrieval", f"best epoch {r.get('best_epoch')}, {key} {r.get(key, float('nan')):.4f}, "
                                  f"{r.get('seconds')} s"))
    if "index" in summary:
        i = summary["index"]
        key = next((k for k in i if k.startswith("recall@")), "recall")
        rows.append(("index", f"{i.get('index_type')} over {i.get('n_items')} items, {key} {i.get(key)}"))
    if "ranking" in summary:
        k = summary["ranking"]
        key = next((x for x in k if x.startswith("val_recall@")), None)
        base = next((x for x in k if x.startswith("val_retrieval_recall@")), None)
        rows.append(("ranking", f"best epoch {k.get('best_epoch')}, {key} {k.get(key, float('nan')):.4f} "
                                f"(retrieval order {k.get(base, float('nan')):.4f}), {k.get('seconds')} s"))
    if secs:
        rows.append(("time", ", ".join(f"{k} {v}s" for k, v in secs.items())))
    return rows


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, "--data", help="dataset folder (cascade data generate/import)"),
    out: Optional[Path] = typer.Option(None, "--out", help="artifact folder (default build/artifacts/<name>-<hash>)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="max epochs (both models; early stopping)"),
    ranking_epochs: Optional[int] = typer.Option(None, "--ranking-epochs", min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="retrieval batch size"),
    dim: Optional[int] = typer.Option(None, "--dim", min=4, help="embedding dimension"),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", min=1, help="torch threads (capped at the CPU count)"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="retrain even if the cache is fresh"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Train retrieval + ranking on a dataset folder and write the model-artifact folder."""
    if ctx.invoked_subcommand is not None:
        return
    if data is None:
        typer.echo(ctx.get_help())
        _fail(CascadeError("--data DIR is required (a folder from `cascade data generate` or `cascade data import`)"))
    try:
        from cascade.workflows.artifacts import train_all

        config = _config(epochs, ranking_epochs, batch_size, dim, threads, seed, progress, device)
        _check_device(device)
        started = time.perf_counter()
        layout, summary, cached = train_all(data, out, config, progress=progress, force=force)
    except CascadeError as error:
        _fail(error)
        return
    rows = _rows_from_summary(summary)
    rows.insert(0, ("artifacts", str(layout.root) + (" (cached: inputs unchanged)" if cached else "")))
    rows.append(("wall", f"{time.perf_counter() - started:.1f} s"))
    _summary_table("cascade train", rows)


@app.command("retrieval")
def train_retrieval_cmd(
    data: Path = typer.Option(..., "--data", help="dataset folder"),
    out: Optional[Path] = typer.Option(None, "--out", help="artifact folder"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2),
    dim: Optional[int] = typer.Option(None, "--dim", min=4),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", min=1),
    seed: int = typer.Option(0, "--seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Fit the workflow (if the folder has none), train the two-tower model, build the index."""
    try:
        from cascade.workflows.artifacts import (
            ArtifactLayout, default_artifacts_dir, fit_workflow, load_workflow, run_retrieval, write_summary,
        )
        from cascade.workflows.training_data import prepare

        config = _config(epochs, None, batch_size, dim, threads, seed, progress, device)
        _check_device(device)
        layout = ArtifactLayout(Path(out) if out else default_artifacts_dir(data))
        layout.root.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        fitted = load_workflow(layout.workflow) if layout.workflow.exists() else fit_workflow(data, layout.workflow, progress)
        prepared = prepare(fitted, data, rank_holdout=config.ranking.rank_holdout,
                           rank_fraction=config.ranking.rank_fraction)
        _, meta, index_meta = run_retrieval(layout, prepared, config)
        summary = write_summary(layout, data, config, {"retrieval+index": time.perf_counter() - t}, "partial")
        summary.update({"retrieval": meta["training"], "index": index_meta})
        layout.summary.write_text(json.dumps(summary, indent=2))
    except CascadeError as error:
        _fail(error)
        return
    _summary_table("cascade train retrieval", [("artifacts", str(layout.root))] + _rows_from_summary(summary))


@app.command("ranking")
def train_ranking_cmd(
    data: Path = typer.Option(..., "--data", help="dataset folder"),
    out: Optional[Path] = typer.Option(None, "--out", help="artifact folder holding workflow/ and retrieval/"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", min=1),
    seed: int = typer.Option(0, "--seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Train the DLRM ranker against an existing workflow + retrieval model."""
    try:
        from cascade.workflows.artifacts import ArtifactLayout, default_artifacts_dir, load_workflow, run_ranking, write_summary
        from cascade.workflows.train_retrieval import load_two_tower
        from cascade.workflows.training_data import prepare

        config = _config(None, epochs, None, None, threads, seed, progress, device)
        _check_device(device)
        layout = ArtifactLayout(Path(out) if out else default_artifacts_dir(data))
        fitted = load_workflow(layout.workflow)
        two_tower = load_two_tower(layout.retrieval)
        t = time.perf_counter()
        prepared = prepare(fitted, data, rank_holdout=config.ranking.rank_holdout,
                           rank_fraction=config.ranking.rank_fraction)
        meta = run_ranking(layout, prepared, two_tower, config)
        summary = write_summary(layout, data, config, {"ranking": time.perf_counter() - t}, "partial")
        summary["ranking"] = meta["training"]
        layout.summary.write_text(json.dumps(summary, indent=2))
    except CascadeError as error:
        _fail(error)
        return
    _summary_table("cascade train ranking", [("artifacts", str(layout.root))] + _rows_from_summary(summary))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
