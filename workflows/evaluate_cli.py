"""``cascade evaluate``: the registered methods (workflows/evaluate_methods.py: popularity, tuned ALS,
the retrieval stage alone, the full served pipeline, the oracle on synthetic data) on the dataset's
test split; writes report.json / report.md / report.png.

The served methods run the stage classes the Triton models wrap, from an export: ``--export DIR``,
or one built under the report folder from the trained artifacts. An export, not artifacts + a
feature repo, because it is exactly what the server loads (the rules file, the candidate count,
the Feast store materialized from train, the item snapshot), so the evaluated configuration
cannot drift from the served one; building one is cheap (hard links + a Feast materialize)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cascade.console import cli_errors, console
from cascade.errors import InvalidInputError, NotFoundError


def default_artifacts_dir(data: Path) -> Path:
    """``build_dir()/artifacts/<dataset name>-<content_hash[:10]>``, the folder ``cascade train`` writes."""
    from cascade.workflows.artifacts import default_artifacts_dir as train_default

    return train_default(data)


def evaluation_export(data: Path, artifacts: Path | None, export: Path | None, out_dir: Path,
                      n_candidates: int) -> Path:
    """The export the served methods run: ``--export`` as given (it must be of this dataset), else
    one built (or reused, by input hash) under the report folder from the trained artifacts."""
    from cascade.online.export_layout import ExportLayout
    from cascade.workflows.dataset import DatasetInfo

    info = DatasetInfo.load(data)
    if export is not None:
        manifest = ExportLayout.find(export).manifest()
        if manifest.dataset_hash != info.content_hash:
            raise InvalidInputError(
                f"--export {export} was built from dataset {manifest.dataset_name!r} ({manifest.dataset_hash[:10]}), "
                f"not from --data {data} ({info.content_hash[:10]}); its Feast store would not hold this train split"
            )
        return ExportLayout.find(export).root
    from cascade.workflows.export import export_repository

    folder = Path(artifacts) if artifacts is not None else default_artifacts_dir(data)
    if not folder.is_dir():
        raise NotFoundError(
            f"no trained artifacts at {folder}; run `cascade train --data {data}` first "
            "(or pass --artifacts DIR / --export DIR, or --methods popularity,als for the baselines alone)"
        )
    console.print(f"building the evaluation export from {folder} ...")
    return export_repository(data, out_dir / "export", artifacts_dir=folder, n_candidates=n_candidates,
                             record_latest=False).root


def evaluate(
    data: Path = typer.Option(..., "--data", help="Dataset folder (cascade data generate/import)."),
    artifacts: Optional[Path] = typer.Option(
        None, help="Trained artifacts to export for the served methods (default: build/artifacts/<name>-<hash10>, "
                   "as `cascade train` writes)."
    ),
    export: Optional[Path] = typer.Option(
        None, "--export", help="Evaluate this export (cascade export of the same --data) instead of building one."
    ),
    methods: Optional[str] = typer.Option(
        None, "--methods", help="Comma-separated methods (default: popularity,als,ease,sources,retrieval,served,oracle where it "
                                "applies); see workflows/evaluate_methods.py."
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
    skip_pipeline: bool = typer.Option(
        False, "--skip-pipeline", help="Only the baselines (no trained models needed); same as leaving "
                                       "retrieval and served out of --methods."),
    n_candidates: int = typer.Option(300, "--n-candidates", help="Retrieval candidates of the export evaluate builds."),
) -> None:
    """Offline metrics (recall, precision, NDCG, MAP, hit rate @K) of every method on the test split;
    the served pipeline is scored through the same stage classes the Triton models run."""
    with cli_errors():
        _run(data, artifacts, export, methods, out, max_users, ks, seed, threads, tune_als, als_objective,
             skip_pipeline, n_candidates)


def _run(
    data: Path, artifacts: Path | None, export: Path | None, methods: str | None, out: Path | None,
    max_users: int | None, ks: str, seed: int, threads: int, tune_als: bool, als_objective: str,
    skip_pipeline: bool, n_candidates: int,
) -> None:
    from cascade.paths import build_dir
    from cascade.workflows.baselines import Catalog, read_interactions
    from cascade.workflows.dataset import load_dataset
    from cascade.workflows.evaluate import dataset_key, evaluate as run_evaluation, parse_ks
    from cascade.workflows.evaluate_methods import METHODS, EvaluationContext, build_methods, parse_methods

    k_list = parse_ks(ks)
    if threads < 1:
        raise InvalidInputError(f"--threads must be >= 1; got {threads}")
    names = parse_methods(methods)
    if skip_pipeline:
        names = [n for n in names if not METHODS[n].needs_export]
    paths, info = load_dataset(data)
    out_dir = Path(out) if out is not None else build_dir() / "evaluation" / dataset_key(info)
    ctx = EvaluationContext(
        data=Path(data), info=info, train=read_interactions(paths.train), catalog=Catalog.from_dataset(data),
        seed=seed, threads=threads,
        export_loader=lambda: evaluation_export(data, artifacts, export, out_dir, n_candidates),
        options={"tune_als": tune_als,
                 "als_objectives": [o.strip() for o in als_objective.split(",") if o.strip()]},
    )
    if any(METHODS[n].needs_export for n in names):
        ctx.export  # fail fast on missing artifacts or a wrong --export, before minutes of ALS tuning
    recommenders = build_methods(names, ctx, explicit=methods is not None)
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
