"""Fit a workflow on the TRAIN split: one streaming pass over train.parquet, then the ops.

The pass reads train.parquet in bounded record batches (progress bar) and keeps only per-entity
interaction counts and the timestamp range, so memory is O(users + items), not O(interactions).
Statistics are then computed on the users / items tables with each row weighted by its number of
train interactions, which equals computing them over train joined with the attributes (every
interaction contributes its user's and its item's values once), without materialising the join.
Entities without train interactions get weight 0 and do not contribute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.errors import SchemaError
from cascade.preprocessing.artifact import ArtifactMeta
from cascade.preprocessing.fitted import FittedWorkflow
from cascade.preprocessing.ops import FitContext
from cascade.preprocessing.schema import ENTITIES
from cascade.preprocessing.tables import id_column, read_entity_frame
from cascade.preprocessing.values import canonicalize
from cascade.preprocessing.workflow import Engine, Workflow

TRAIN_COLUMNS = ("user_id", "item_id", "timestamp")


@dataclass
class InteractionCounts:
    """What one pass over the train interactions yields."""

    user_counts: pd.Series  # index raw user_id -> train interactions
    item_counts: pd.Series
    rows: int
    timestamp_min: int | None
    timestamp_max: int | None


def check_train_schema(train_path: Path) -> int:
    """SchemaError naming the column when train.parquet lacks an int64 interaction column; returns rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(train_path)
    schema = file.schema_arrow
    for name in TRAIN_COLUMNS:
        if name not in schema.names:
            raise SchemaError(f"{train_path.name}: column {name!r} is missing; expected int64")
        if not pa.types.is_integer(schema.field(name).type):
            raise SchemaError(f"{train_path.name}: column {name!r} has dtype {schema.field(name).type}; expected int64")
    return file.metadata.num_rows


def _merge(parts: list[pd.Series]) -> pd.Series:
    if not parts:
        return pd.Series([], dtype=np.int64)
    merged = pd.concat(parts).groupby(level=0).sum()
    merged.index = merged.index.astype(np.int64)
    return merged.astype(np.int64)


def scan_interactions_cpu(train_path: Path, batch_rows: int, progress: bool) -> InteractionCounts:
    import pyarrow.parquet as pq
    from cascade.progress import progress_bar

    total = check_train_schema(train_path)
    file = pq.ParquetFile(train_path)
    users: list[pd.Series] = []
    items: list[pd.Series] = []
    t_min, t_max = None, None
    with progress_bar(total=total, unit="row", unit_scale=True, desc="fit: scan train", enabled=progress) as bar:
        for batch in file.iter_batches(batch_size=batch_rows, columns=list(TRAIN_COLUMNS)):
            user = batch.column(0).to_numpy(zero_copy_only=False)
            item = batch.column(1).to_numpy(zero_copy_only=False)
            stamp = batch.column(2).to_numpy(zero_copy_only=False)
            users.append(pd.Series(user).value_counts(sort=False))
            items.append(pd.Series(item).value_counts(sort=False))
            if len(stamp):
                lo, hi = int(stamp.min()), int(stamp.max())
                t_min = lo if t_min is None else min(t_min, lo)
                t_max = hi if t_max is None else max(t_max, hi)
            if len(users) >= 64:  # bound memory on very long files
                users, items = [_merge(users)], [_merge(items)]
            bar.update(batch.num_rows)
    return InteractionCounts(_merge(users), _merge(items), total, t_min, t_max)


def scan_interactions(train_path: Path, engine: Engine, batch_rows: int, progress: bool) -> InteractionCounts:
    if engine == "cpu":
        return scan_interactions_cpu(train_path, batch_rows, progress)
    if engine == "cudf":
        from cascade.preprocessing.gpu import scan_interactions_cudf

        return scan_interactions_cudf(train_path, progress)
    raise SchemaError(f"engine must be 'cpu' or 'cudf', got {engine!r}")


def fit_workflow(
    workflow: Workflow, data_dir: Path, *, engine: Engine = "cpu", batch_rows: int = 1 << 20, progress: bool = True
) -> FittedWorkflow:
    """Fit a copy of ``workflow`` on the train split of the dataset at ``data_dir``."""
    from cascade.progress import progress_bar

    from cascade.workflows.dataset import load_dataset

    started = time.perf_counter()
    paths, info = load_dataset(data_dir)
    fitted = workflow.copy()
    counts = scan_interactions(paths.train, engine, batch_rows, progress)
    ctx = FitContext(counts.rows, counts.timestamp_min, counts.timestamp_max)
    for entity in ENTITIES:
        pipelines = [
            p for p in fitted.pipelines
            if p.entity == entity and any(op.stateful and getattr(op, "vocab_from", None) is None for op in p.ops)
        ]
        if not pipelines:
            continue
        inputs = list({p.input.name: p.input for p in pipelines}.values())
        frame = read_entity_frame(paths, entity, inputs, user_counts=counts.user_counts)
        entity_counts = counts.user_counts if entity == "user" else counts.item_counts
        ids = frame[id_column(entity)].to_numpy(np.int64)
        weights = entity_counts.reindex(ids, fill_value=0).to_numpy(np.float64)
        for pipeline in progress_bar(pipelines, desc=f"fit: {entity} columns", enabled=progress):
            pipeline.fit(canonicalize(frame[pipeline.input.name].to_numpy(), pipeline.input), weights, ctx)
    meta = ArtifactMeta(
        dataset_hash=info.content_hash,
        dataset_name=info.name,
        config_hash=workflow.config_hash(),
        engine=engine,
        train_rows=counts.rows,
        timestamp_range=None if counts.timestamp_min is None else (counts.timestamp_min, counts.timestamp_max),
        fit_seconds=round(time.perf_counter() - started, 3),
    )
    return FittedWorkflow(fitted, meta)

