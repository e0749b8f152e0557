"""``cascade evaluate``: popularity, tuned ALS, retrieval alone, retrieval + ranking (and the oracle on
synthetic data) on the temporal test split; writes report.json / report.md / report.png."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from cascade.console import cli_errors, console
from cascade.errors import NotFoundError


class PipelineRecommender:
    """Adapts ``cascade.pipeline.OfflinePipeline.recommend_batch`` to the BatchRecommender protocol."""

    def __init__(self, pipeline: object, stage: str, name: str, n_candidates: int = 300) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.name = name
        self.n_candidates = n_candidates

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        return np.asarray(
            self.pipeline.recommend_batch(  # type: ignore[attr-defined]
                user_ids, k, stage=self.stage, exclude=exclude, n_candidates=self.n_candidates
            )
        )

    def details(self) -> dict[str, object]:
        return {"stage": self.stage, "n_candidates": self.n_candidates}


def default_artifacts_dir(data: Path) -> Path:
    """``build_dir()/artifacts/<dataset name>-<content_hash[:10]>``, the folder ``cascade train`` writes."""
    try:
        from cascade.workflows.artifacts import default_artifacts_dir as train_default
    except ImportError:  # pragma: no cover - the same rule, if the train module is unavailable
        train_default = None
    if train_default is not None:
        return train_default(data)
    from cascade.paths import build_dir
    from cascade.workflows.dataset import DatasetInfo
    from cascade.workflows.evaluate import dataset_key

    return build_dir() / "artifacts" / dataset_key(DatasetInfo.load(data))


def pipeline_recommenders(
    data: Path, artifacts: Path | None, n_candidates: int, threads: int = 2
) -> list[PipelineRecommender]:
    """Retrieval-only and retrieval + ranking adapters over the trained artifacts."""
    folder = Path(artifacts) if artifacts is not None else default_artifacts_dir(data)
    if not folder.is_dir():
        raise NotFoundError(
            f"no trained artifacts at {folder}; run `cascade train --data {data}` first "
            "(or pass --artifacts DIR, or --skip-pipeline for the baselines alone)"
        )
    try:
        from cascade.pipeline import OfflinePipeline
    except ModuleNotFoundError as error:
        raise NotFoundError(
            f"the in-process pipeline is not available ({error}); use --skip-pipeline for the baselines alone"
        ) from None

    pipeline = OfflinePipeline.load(folder, data_dir=data, threads=threads)
    return [
        PipelineRecommender(pipeline, "retrieval", "retrieval", n_candidates),
        PipelineRecommender(pipeline, "ranking", "retrieval+ranking", n_candidates),
    ]


def evaluate(
    data: Path = typer.Option(..., "--data", help="Dataset folder (cascade data generate/import)."),
    artifacts: Optional[Path] = typer.Option(
        None, help="Trained artifacts (default: build/artifacts/<name>-<hash10>, as `cascade train` writes)."
    ),
    out: Optional[Path] = typer.Option(None, help="Report folder (default: build/evaluation/<name>-<hash10>)."),
    max_users: Optional[int] = typer.Option(
        None, "--max-users", help="Evaluate a seeded uniform sample of this many test users (default: all)."
    ),
    ks: str = typer.Option("10,100", "--ks", help="Comma-separated cut-offs K."),
    seed: int = typer.Option(0, help="Seed for the user sample and ALS."),
    threads: int = typer.Option(2, help="Threads for implicit ALS."),
    tune_als: bool = typer.Option(True, "--tune-als/--no-tune-als", help="Grid-search ALS on a validation split."),
    als_objective: str = typer.Option(
        "ndcg@10,recall@100", "--als-objective",
        help="Validation metric(s) the ALS grid maximises, comma-separated: one tuned ALS row per objective.",
    ),
    skip_pipeline: bool = typer.Option(False, "--skip-pipeline", help="Only the baselines (no trained models needed)."),
    n_candidates: int = typer.Option(300, "--n-candidates", help="Retrieval candidates for the ranking stage."),
) -> None:
    """Offline metrics (recall, precision, NDCG, MAP, hit rate @K) of every method on the test split."""
    with cli_errors():
        _run(data, artifacts, out, max_users, ks, seed, threads, tune_als, als_objective, skip_pipeline, n_candidates)


def _run(
    data: Path, artifacts: Path | None, out: Path | None, max_users: int | None, ks: str, seed: int,
    threads: int, tune_als: bool, als_objective: str, skip_pipeline: bool, n_candidates: int,
) -> None:
    from cascade.errors import InvalidInputError
    from cascade.paths import build_dir
    from cascade.workflows.baselines import (
        ALSParams, ALSRecommender, Catalog, OracleRecommender, PopularityRecommender, read_interactions,
    )
    from cascade.workflows.dataset import load_dataset
    from cascade.workflows.evaluate import dataset_key, evaluate as run_evaluation, parse_ks

    k_list = parse_ks(ks)
    if threads < 1:
        raise InvalidInputError(f"--threads must be >= 1; got {threads}")
    paths, info = load_dataset(data)
    # Fail fast on missing artifacts, before minutes of ALS tuning.
    pipeline = [] if skip_pipeline else pipeline_recommenders(data, artifacts, n_candidates, threads)
    catalog = Catalog.from_dataset(data)
    train = read_interactions(paths.train)
    recommenders: list = [PopularityRecommender.fit(catalog, train)]
    if tune_als:
        console.print("tuning ALS on a validation split carved from train ...")
        objectives = [o.strip() for o in als_objective.split(",") if o.strip()]
        tuned = ALSRecommender.tune_objectives(catalog, train, seed=seed, num_threads=threads, objectives=objectives)
        for als in tuned:
            tuning = als.tuning
            assert tuning is not None
            console.print(f"ALS best for {tuning.objective}: {tuning.best.label() if tuning.best else '?'} "
                          f"({len(tuning.results)} fits, {tuning.seconds:.0f} s)")
        recommenders += tuned
    else:
        recommenders.append(ALSRecommender(catalog, ALSParams(), seed=seed, num_threads=threads).fit(train))
    recommenders += pipeline
    if info.has_oracle:
        recommenders.append(OracleRecommender(data, catalog))
    out_dir = Path(out) if out is not None else build_dir() / "evaluation" / dataset_key(info)
    report = run_evaluation(data, recommenders, ks=k_list, max_users=max_users, seed=seed, out_dir=out_dir)
    _print_table(report)
    console.print(f"report: {out_dir}/report.md (+ report.json, report.png)")


def _print_table(report) -> None:
    """One compact rich table per K (fits an 80-column terminal)."""
    from rich.table import Table

    from cascade.metrics import METRIC_NAMES

    console.print(f"[bold]{report.dataset['name']}[/bold]: {report.sample_sentence()}")
    for k in report.ks:
        table = Table(title=f"K = {k}")
        table.add_column("method", no_wrap=True)
        for metric in METRIC_NAMES:
            table.add_column(metric, justify="right", no_wrap=True)
        table.add_column("seconds", justify="right", no_wrap=True)
        for method in report.methods:
            table.add_row(
                method.name, *(f"{method.metrics[f'{m}@{k}']:.4f}" for m in METRIC_NAMES), f"{method.seconds:.1f}"
            )
        console.print(table)
