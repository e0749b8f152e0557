"""``cascade retrain --export EXPORT --events LOG [--full] --out NEW_EXPORT``: continual training.

1. **Dataset**: the export's dataset (its train split) plus the interaction log's events
   (deduplicated by (user, item, timestamp); optionally only events up to ``until``), users the log
   introduced (attribute-less rows), and the export's current catalog (the feature repo's item
   source, with items added by ``cascade items upsert``); the export's test split stays the test
   split, never trained on, so ``cascade release --data`` gates each retrain on the rows its
   champion was gated on. Written as a canonical dataset folder.
2. **Workflow**: refitted on that dataset: vocabularies grow with the new users and items.
3. **Models**: ``--full`` trains both from scratch (:func:`cascade.workflows.artifacts.train_all`).
   Otherwise both are warm-started from the export's weights, remapped by raw value onto the grown
   vocabularies (:mod:`cascade.events.warm_start`), and trained for ``warm_epochs`` at a lower
   learning rate; the index is rebuilt over the whole catalog.
4. **Export**: a new, complete export (``cascade export`` on the new dataset and artifacts). It is
   servable as is; the bundles issue's release gate (``cascade release``) is the step that decides
   whether it replaces the live bundle (k8s/base/retrain-cronjob.yaml runs both).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.errors import DataValidationError, NotFoundError

LOG = logging.getLogger(__name__)


@dataclass
class RetrainConfig:
    warm_epochs: int = 2
    warm_lr_factor: float = 0.5  # warm start: max learning rate x this
    seed: int = 0
    progress: bool = False
    train: Any = None  # TrainConfig for --full (and the base of the warm configs); None = defaults


@dataclass
class RetrainResult:
    export_root: Path
    dataset_dir: Path
    artifacts_dir: Path
    mode: str  # "warm" | "full"
    n_events: int
    new_users: int
    new_items: int
    seconds: dict[str, float] = field(default_factory=dict)
    warm_start: dict[str, Any] = field(default_factory=dict)


def export_dataset_dir(export_root: Path) -> Path:
    from cascade.features.repo import FeatureRepo
    from cascade.online.export_layout import ExportLayout

    repo = FeatureRepo.load(ExportLayout(export_root).feature_repo)
    path = repo.extra.get("dataset_dir")
    if not path or not Path(str(path)).is_dir():
        raise NotFoundError(f"the dataset export {export_root} was built from ({path}) is not there; retrain needs it")
    return Path(str(path))


def current_items(export_root: Path, base_items: pa.Table) -> pa.Table:
    """The export's catalog now (feature-repo item source) in the dataset's items schema."""
    from cascade.features.repo import ITEM_SOURCE
    from cascade.online.export_layout import ExportLayout

    source = pq.read_table(ExportLayout(export_root).feature_repo / ITEM_SOURCE)
    columns = {}
    for f in base_items.schema:
        if f.name in source.column_names:
            columns[f.name] = source.column(f.name).cast(f.type, safe=False)
        else:  # a dataset column the feature view does not hold (e.g. a text column)
            by_id = dict(zip(base_items.column("item_id").to_pylist(), base_items.column(f.name).to_pylist()))
            columns[f.name] = pa.array([by_id.get(i) for i in source.column("item_id").to_pylist()], f.type)
    return pa.table(columns, schema=base_items.schema)


def build_dataset(base_dir: Path, events: pd.DataFrame, items: pa.Table, out_dir: Path, name: str) -> Any:
    """The canonical dataset: train = base train + ``events``, test = the base TEST split unchanged
    (never trained on, so every release of a retrain chain is gated on the same held-out rows as
    its champion: ``cascade release --data``), catalog ``items``, users grown. Events equal to a
    test row (user, item, timestamp) are dropped."""
    from cascade.workflows.dataset import DatasetInfo, DatasetWriter, interaction_schema

    info = DatasetInfo.load(base_dir)
    users = pq.read_table(base_dir / "users.parquet")
    columns = ["user_id", "item_id", "timestamp", "weight"]
    dtypes = {"user_id": "int64", "item_id": "int64", "timestamp": "int64", "weight": "float32"}
    test = pd.read_parquet(base_dir / "test.parquet", columns=columns).astype(dtypes)
    inter = pd.concat([pd.read_parquet(base_dir / "train.parquet", columns=columns), events[columns]],
                      ignore_index=True).astype(dtypes)
    inter = inter.drop_duplicates(["user_id", "item_id", "timestamp"], keep="first")
    in_test = pd.MultiIndex.from_frame(inter[["user_id", "item_id", "timestamp"]]).isin(
        pd.MultiIndex.from_frame(test[["user_id", "item_id", "timestamp"]]))
    inter = inter[~in_test].sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    known_items = set(items.column("item_id").to_pylist())
    unknown = set(inter["item_id"].unique().tolist()) - known_items
    if unknown:
        raise DataValidationError(f"interaction log: item ids {sorted(unknown)[:5]} are not in the export's catalog")
    old_users = users.column("user_id").to_numpy().astype(np.int64)
    new_users = np.setdiff1d(inter["user_id"].unique().astype(np.int64), old_users)
    if len(new_users):
        extra = pa.table({f.name: (pa.array(new_users, f.type) if f.name == "user_id" else pa.nulls(len(new_users), f.type))
                          for f in users.schema}, schema=users.schema)
        users = pa.concat_tables([users, extra])
    schema = interaction_schema()
    with DatasetWriter(out_dir) as writer:
        pq.write_table(users, writer.paths.users)
        pq.write_table(items, writer.paths.items)
        pq.write_table(pa.Table.from_pandas(inter, schema=schema, preserve_index=False), writer.paths.train)
        pq.write_table(pa.Table.from_pandas(test, schema=schema, preserve_index=False), writer.paths.test)
        ts = pd.concat([inter["timestamp"], test["timestamp"]])
        return writer.commit(info.model_copy(update={
            "name": name, "n_users": users.num_rows, "n_items": items.num_rows, "n_train": len(inter),
            "n_test": len(test), "test_fraction": round(len(test) / max(len(inter) + len(test), 1), 6),
            "time_range": (int(ts.min()), int(ts.max())), "has_oracle": False,
        })), int(len(new_users))


def _warm_train(data_dir: Path, out: Path, export_root: Path, config: RetrainConfig,
                log: Callable[[str], None]) -> tuple[dict, dict]:
    """Warm-started retrieval + index + item-to-item neighbours + ranking into ``out`` (the
    artifacts layout), through the same steps as ``cascade train``
    (:func:`cascade.workflows.artifacts.run_retrieval` / ``run_ranking``: the ranker is trained on
    the merged candidates serving sends it, item-to-item scores included), with the warm-start hook
    and ``warm_epochs`` at a lower learning rate."""
    import torch

    from cascade.events.warm_start import warm_start
    from cascade.online.export_layout import ExportLayout
    from cascade.workflows.artifacts import ArtifactLayout, TrainConfig, fit_workflow, load_workflow, run_ranking, run_retrieval
    from cascade.workflows.training_data import prepare

    base = ExportLayout(export_root).artifacts
    train_config = config.train or TrainConfig()
    warm = replace(train_config, retrieval=replace(
        train_config.retrieval, epochs=config.warm_epochs, progress=config.progress,
        lr=train_config.retrieval.lr * config.warm_lr_factor, seed=config.seed,
    ), ranking=replace(
        train_config.ranking, epochs=config.warm_epochs, progress=config.progress,
        lr=train_config.ranking.lr * config.warm_lr_factor, seed=config.seed,
    ))
    layout = ArtifactLayout(out)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    old_workflow = load_workflow(base / "workflow")
    new_workflow = fit_workflow(data_dir, layout.workflow, progress=config.progress)
    data = prepare(new_workflow, data_dir, rank_holdout=warm.ranking.rank_holdout,
                   rank_fraction=warm.ranking.rank_fraction)
    timings["workflow+examples"] = time.perf_counter() - t

    reports: dict[str, Any] = {}
    old_retrieval = torch.load(base / "retrieval" / "model.pt", weights_only=True)
    t = time.perf_counter()
    two_tower, retrieval_meta, _ = run_retrieval(layout, data, warm, init=lambda m: reports.__setitem__(
        "retrieval", warm_start(m, old_retrieval, old_workflow, new_workflow).to_dict()))
    timings["retrieval+index"] = time.perf_counter() - t

    old_ranking = torch.load(base / "ranking" / "model.pt", weights_only=True)
    t = time.perf_counter()
    ranking_meta = run_ranking(layout, data, two_tower, warm, init=lambda m: reports.__setitem__(
        "ranking", warm_start(m, old_ranking, old_workflow, new_workflow, skip_prefixes=("two_tower.",)).to_dict()))
    timings["ranking"] = time.perf_counter() - t
    summary = {"mode": "warm", "base_export": str(Path(export_root).resolve()), "warm_start": reports,
               "seconds": {k: round(v, 2) for k, v in timings.items()},
               "retrieval": retrieval_meta["training"], "ranking": ranking_meta["training"]}
    layout.summary.write_text(json.dumps(summary, indent=2))
    return timings, reports


def retrain(export_root: Path, events_url: str, out: Path, *, full: bool = False, until: int | None = None,
            work_dir: Path | None = None, data_dir: Path | None = None, config: RetrainConfig | None = None,
            log: Callable[[str], None] = LOG.info) -> RetrainResult:
    """Retrain from ``export_root`` + the interaction log at ``events_url`` into export ``out``.
    ``data_dir``: the dataset the export was built from, when not at the path the export recorded
    (e.g. synced from object storage by the CronJob); the grown dataset is written to
    ``work_dir/data`` (default: beside ``out``) and recorded in the new export."""
    from cascade.events.log import read_log
    from cascade.online.export_layout import ExportLayout
    from cascade.workflows.artifacts import train_all
    from cascade.workflows.export import export_repository

    config = config or RetrainConfig()
    export_root = Path(export_root).resolve()
    manifest = ExportLayout(export_root).manifest()
    out = Path(out).resolve()
    work = Path(work_dir) if work_dir else out.parent / f".{out.name}.retrain"
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    base_dir = Path(data_dir).resolve() if data_dir else export_dataset_dir(export_root)
    events = read_log(events_url, end=until)
    base_items = pq.read_table(base_dir / "items.parquet")
    items = current_items(export_root, base_items)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    info, new_users = build_dataset(base_dir, events, items, work / "data", f"{manifest.dataset_name}-r{stamp}")
    data_dir = work / "data"
    seconds["dataset"] = time.perf_counter() - t
    t = time.perf_counter()
    artifacts = work / "artifacts"
    reports: dict[str, Any] = {}
    if full:
        train_all(data_dir, artifacts, config.train, progress=config.progress, force=True, log=log)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=".artifacts.tmp-", dir=work))
        try:
            _, reports = _warm_train(data_dir, tmp, export_root, config, log)
            if artifacts.exists():
                shutil.rmtree(artifacts)
            tmp.rename(artifacts)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    export_repository(data_dir, out, artifacts_dir=artifacts, n_candidates=manifest.n_candidates, force=True)
    seconds["export"] = time.perf_counter() - t
    return RetrainResult(out, data_dir, artifacts, "full" if full else "warm", len(events), new_users,
                         int(items.num_rows - base_items.num_rows), {k: round(v, 2) for k, v in seconds.items()}, reports)
