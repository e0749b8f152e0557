"""``cascade items upsert FILE --export EXPORT``: add or update catalog items without retraining.

1. The file's rows (``item_id`` + any item attribute columns of the export's feature repo) update
   the feature repo's item source (``data/item_features.parquet``): given columns of existing items
   are replaced, new items are appended (new catalog rows; absent attributes null, ``available``
   true unless given). Unknown columns or values that do not convert are errors naming the column.
2. Items the retrieval index lacks are embedded with the export's item tower from their attributes
   (the same fitted workflow and ``item_tower.onnx`` serving and training use) and published as the
   index extension (:mod:`cascade.events.extension`). Existing items keep their trained vectors
   (their learned id embedding carries their interaction history); their new attributes reach
   ranking and the business rules through the snapshot.
3. ONLY the item view is materialized (the user view in the online store holds pushed event
   updates that re-materializing the Parquet source would overwrite), and a new item snapshot is
   published: the running server picks both up within its refresh interval.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.errors import DataValidationError, InvalidInputError, NotFoundError, SchemaError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsertResult:
    added: list[int]
    updated: list[int]
    embedded: int  # items in the index extension after this upsert
    extension_version: str | None
    snapshot_version: str


def read_items_file(path: Path) -> pa.Table:
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"items file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
    elif suffix in (".csv", ".txt"):
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
    else:
        raise InvalidInputError(f"items file {path}: expected a .csv or .parquet file, got {suffix or 'no suffix'!r}")
    if "item_id" not in table.column_names:
        raise DataValidationError(f"items file {path}: column 'item_id' is missing; it has {table.column_names}")
    ids = table.column("item_id")
    if ids.null_count or not pa.types.is_integer(ids.type):
        raise DataValidationError(f"items file {path}: column 'item_id' must be non-empty integers, got {ids.type}")
    values = ids.to_numpy().astype(np.int64)
    if (values < 0).any():
        row = int(np.flatnonzero(values < 0)[0])
        raise DataValidationError(f"items file {path}: row {row}: item_id {int(values[row])} must be >= 0")
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise DataValidationError(f"items file {path}: item_id {int(unique[counts > 1][0])} appears more than once")
    return table


def _conform(updates: pa.Table, source_schema: pa.Schema, path: Path) -> pa.Table:
    """The update columns cast to the item source's types (error names the column)."""
    from cascade.features.schema import CATALOG_ROW, EVENT_TIMESTAMP

    allowed = [n for n in source_schema.names if n not in (CATALOG_ROW, EVENT_TIMESTAMP)]
    unknown = [n for n in updates.column_names if n not in allowed]
    if unknown:
        raise SchemaError(f"items file {path}: unknown column(s) {unknown}; the item view has {allowed}")
    columns = {}
    for name in updates.column_names:
        target = source_schema.field(name).type
        try:
            columns[name] = updates.column(name).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"items file {path}: column {name!r} ({updates.column(name).type}) cannot be "
                              f"converted to the item view's {target}: {exc}") from exc
    return pa.table(columns)


def merge_items(source: pa.Table, updates: pa.Table, now: datetime) -> tuple[pa.Table, list[int], list[int]]:
    """The item source with ``updates`` applied (see the module docstring)."""
    from cascade.features.schema import CATALOG_ROW, EVENT_TIMESTAMP

    source_ids = source.column("item_id").to_numpy().astype(np.int64)
    update_ids = updates.column("item_id").to_numpy().astype(np.int64)
    row_of = {int(v): i for i, v in enumerate(source_ids)}
    existing = np.array([row_of.get(int(v), -1) for v in update_ids], dtype=np.int64)
    is_new = existing < 0
    n_old, n_new = source.num_rows, int(is_new.sum())
    ts_type = source.schema.field(EVENT_TIMESTAMP).type
    columns = {}
    for field in source.schema:
        name = field.name
        values = source.column(name).to_pylist()
        if name == CATALOG_ROW:
            values += list(range(n_old, n_old + n_new))
        elif name == EVENT_TIMESTAMP:
            for row in existing[~is_new]:
                values[row] = now
            values += [now] * n_new
        elif name in updates.column_names:
            given = updates.column(name).to_pylist()
            for j in np.flatnonzero(~is_new):
                values[existing[j]] = given[j]
            values += [given[j] for j in np.flatnonzero(is_new)]
        elif name == "available":
            values += [True] * n_new
        else:
            values += [None] * n_new
        columns[name] = pa.array(values, type=ts_type if name == EVENT_TIMESTAMP else field.type)
    merged = pa.table(columns, schema=source.schema)
    return merged, [int(v) for v in update_ids[is_new]], [int(v) for v in update_ids[~is_new]]


def embed_items(export_root: Path, items: pa.Table) -> np.ndarray:
    """Item-tower embeddings [N, D] of ``items`` (raw item-view columns) with the export's fitted
    workflow and ``item_tower.onnx`` (the same transform as training's catalog embedding)."""
    from cascade.online.export_layout import ExportLayout
    from cascade.online.onnx import OnnxModel
    from cascade.online.stages import load_workflow
    from cascade.workflows.training_data import raw_entity_columns, transform_chunked, workflow_inputs

    layout = ExportLayout(export_root)
    workflow = load_workflow(layout.workflow)
    frame = items.to_pandas()
    columns = raw_entity_columns(frame, workflow_inputs(workflow, "item"))
    encoded = transform_chunked(workflow, columns, "item")
    model = OnnxModel(layout.artifacts / "retrieval" / "item_tower.onnx")
    return model.run(encoded)[0].astype(np.float32)


def upsert_items(export_root: Path, items_file: Path) -> UpsertResult:
    from cascade.events.extension import load_extension, publish_extension
    from cascade.features.repo import ITEM_SOURCE, ITEM_VIEW, FeatureRepo
    from cascade.features.snapshot import write_item_snapshot
    from cascade.features.store import materialize_range, open_store
    from cascade.online.export_layout import ExportLayout

    layout = ExportLayout(export_root)
    layout.manifest()  # NotFoundError when it is not an export
    repo = FeatureRepo.load(layout.feature_repo)
    source_path = repo.root / ITEM_SOURCE
    source = pq.read_table(source_path)
    updates = _conform(read_items_file(items_file), source.schema, Path(items_file))
    now = datetime.now(timezone.utc)
    merged, added, updated = merge_items(source, updates, now)

    # 1. embeddings of every item the base index lacks (new now, or added by an earlier upsert and
    #    maybe updated now), published before the snapshot that carries their attributes
    base_ids = np.load(layout.index / "item_ids.npy").astype(np.int64)
    merged_ids = merged.column("item_id").to_numpy().astype(np.int64)
    outside = merged_ids[~np.isin(merged_ids, base_ids)]
    previous = load_extension(repo.root)
    changed = set(added) | set(updated)
    extension_version = previous.version if previous is not None else None
    if len(outside) and (previous is None or changed & set(outside.tolist())):
        rows = np.flatnonzero(np.isin(merged_ids, outside))
        vectors = embed_items(layout.root, merged.take(pa.array(rows)))
        extension_version = publish_extension(repo.root, merged_ids[rows], vectors)
        LOG.info("index extension %s: %d items", extension_version, len(rows))

    # 2. the item source, the repo's item count, then materialize the item view only + a snapshot
    tmp = source_path.with_name(f".{source_path.name}.tmp-{os.getpid()}")
    pq.write_table(merged, tmp)
    os.replace(tmp, source_path)
    repo.n_items = merged.num_rows
    repo.feature_timestamp = max(repo.feature_timestamp, int(now.timestamp()))
    repo.save()
    store = open_store(repo.root)
    start, end = materialize_range(repo)
    store.materialize(start_date=start, end_date=end, feature_views=[ITEM_VIEW])
    version, _ = write_item_snapshot(store, repo, start, end)
    return UpsertResult(added, updated, len(outside), extension_version, version)


@dataclass(frozen=True)
class PublishResult:
    changed: bool
    snapshot_version: str | None


UNCHANGED_MARKER = "UNCHANGED"


def publish_if_changed(repo_dir: Path) -> PublishResult:
    """The scheduled materialization (k8s/base/feast-materialize-cronjob.yaml): materialize the
    item view and publish a new item snapshot ONLY when the catalog differs from the published
    snapshot (compared by the snapshot digest, so no local state is needed: the job's feature repo
    is a fresh copy with only ``item_snapshot/LATEST``). The user view is not re-materialized: its
    online rows change through pushed events (newer than the export's Parquet rows) and are
    rebuilt by each retrain/export. When nothing changed, ``item_snapshot/UNCHANGED`` is written
    for the upload step (feast-sync.sh push) and nothing is published."""
    import hashlib
    import io

    from cascade.features.repo import ITEM_VIEW, SNAPSHOT_DIR, FeatureRepo
    from cascade.features.snapshot import latest_version, read_item_view, write_item_snapshot
    from cascade.features.store import apply, materialize_range, open_store

    repo = FeatureRepo.load(repo_dir)
    apply(repo.root, skip_if_fresh=True)
    store = open_store(repo.root)
    start, end = materialize_range(repo)
    table, _ = read_item_view(store, start, end)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()[:8]
    current = latest_version(repo.root)
    marker = repo.root / SNAPSHOT_DIR / UNCHANGED_MARKER
    if current is not None and current.rsplit("-", 1)[-1] == digest:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(current + "\n")
        return PublishResult(False, current)
    marker.unlink(missing_ok=True)
    store.materialize(start_date=start, end_date=end, feature_views=[ITEM_VIEW])
    version, _ = write_item_snapshot(store, repo, start, end)
    return PublishResult(True, version)
