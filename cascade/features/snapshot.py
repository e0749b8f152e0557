"""The item snapshot: an in-memory columnar copy of the Feast ``item_features`` view for the hot path.

Feast's Python SDK costs ~9 ms for 300 entities, so candidate features are gathered by catalog row
from this snapshot instead (see docs/feast.md). ``materialize`` publishes one::

    item_snapshot/<version>/items.parquet   item_id + every item_features feature, catalog order
    item_snapshot/<version>/meta.json       version, rows, columns, list columns, feature view
    item_snapshot/LATEST                    the current version string

The rows are read THROUGH Feast: the registered ``item_features`` view gives the batch source,
join key and feature list, and the offline store's ``pull_latest_from_table_or_query`` (the same
read that materialization does) returns the latest row per item; rows are then put in catalog
order (``catalog_row`` = row in the dataset's items.parquet). A version is
``YYYYMMDDTHHMMSSffffffZ-<sha256[:8] of items.parquet>``: lexicographic order = publish order.
The version folder is written under a temporary name and renamed; ``LATEST`` is replaced
atomically last, so a reader never sees a half-written snapshot. The newest ``KEEP`` versions stay.

Validation: ``meta.json`` is written after ``items.parquet`` and records its ``sha256``, byte
``size``, ``rows`` and Arrow ``schema``; :meth:`ItemSnapshot.load` checks all of them (and that
``item_id`` is present, int64 and unique) and raises :class:`InvalidSnapshotError` naming the file
and the mismatch, so a corrupt, truncated or hand-copied snapshot is rejected and the serving stage
keeps its previous one (``cascade_snapshot_refresh_failures_total``). Snapshots published before
the checksum existed (no ``sha256`` in meta) load with a warning.

In memory (:class:`ItemSnapshot`): scalar columns are 1-D numpy arrays (int64/int32/float/bool;
string columns and int/bool columns with nulls are object arrays, nulls ``None``; float nulls NaN);
LIST columns (e.g. ``genres``) are 1-D object arrays whose elements are 1-D numpy arrays (a null
list is an empty array) -- the form ``FittedWorkflow.transform_batch`` accepts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.errors import DataValidationError, InvalidInputError, NotFoundError, SchemaError
from cascade.features.repo import ITEM_VIEW, SNAPSHOT_DIR, FeatureRepo
from cascade.features.schema import CATALOG_ROW, numpy_column
from cascade.ids import IdIndex

if TYPE_CHECKING:  # pragma: no cover
    from feast import FeatureStore

LOG = logging.getLogger(__name__)
LATEST = "LATEST"
ITEMS_FILE = "items.parquet"
SNAPSHOT_META_FILE = "meta.json"
KEEP = 3
_TS_FORMAT = "%Y%m%dT%H%M%S%fZ"
SNAPSHOT_FORMAT = 2  # 2: meta.json carries sha256, size and the Arrow schema of items.parquet


class InvalidSnapshotError(DataValidationError):
    """A published item snapshot is corrupt, half-written or does not match its meta.json."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _schema(schema: pa.Schema) -> dict[str, str]:
    return {field.name: str(field.type) for field in schema}


def latest_version(repo_dir: Path) -> str | None:
    """The version in ``item_snapshot/LATEST``, or None when nothing was published yet."""
    path = Path(repo_dir) / SNAPSHOT_DIR / LATEST
    try:
        version = path.read_text().strip()
    except FileNotFoundError:
        return None
    return version or None


def _next_version(previous: str | None, digest: str) -> str:
    now = datetime.now(timezone.utc)
    if previous:
        try:
            prev_time = datetime.strptime(previous.split("-")[0], _TS_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            prev_time = None
        if prev_time is not None and now <= prev_time:
            now = prev_time + timedelta(microseconds=1)  # stay monotonic under clock skew
    return f"{now.strftime(_TS_FORMAT)}-{digest[:8]}"


def read_item_view(store: "FeatureStore", start: datetime, end: datetime) -> tuple[pa.Table, list[str]]:
    """Latest row per item of the registered ``item_features`` view, in catalog order.

    Returns the table (``item_id`` + features) and the names of its list columns.
    """
    from feast.infra.offline_stores.file_source import FileSource
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config
    from feast.types import Array

    view = store.get_feature_view(ITEM_VIEW)
    source = view.batch_source
    join_keys = [column.name for column in view.entity_columns]
    features = [feature.name for feature in view.features]
    if join_keys != ["item_id"]:
        raise SchemaError(f"feature view {ITEM_VIEW!r} must have join key ['item_id'], has {join_keys}")
    offline = get_offline_store_from_config(store.config.offline_store)
    job = offline.pull_latest_from_table_or_query(
        config=store.config,
        data_source=source,
        join_key_columns=join_keys,
        feature_name_columns=features + [CATALOG_ROW],
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None,
        start_date=start,
        end_date=end,
    )
    table = job.to_arrow()
    # Restore the source file's declared Arrow types (a pandas round trip loses e.g. list<string>
    # when every list is empty).
    if isinstance(source, FileSource):
        path = FileSource.get_uri_for_file_path(store.config.repo_path, source.path)
        schema = pq.read_schema(path)
        table = table.select(join_keys + features + [CATALOG_ROW])
        table = table.cast(pa.schema([schema.field(name) for name in table.column_names]))
    order = np.argsort(table.column(CATALOG_ROW).to_numpy(), kind="stable")
    table = table.take(pa.array(order)).select(join_keys + features)
    lists = [f.name for f in view.features if isinstance(f.dtype, Array)]
    return table, lists


def write_item_snapshot(
    store: "FeatureStore", repo: FeatureRepo, start: datetime, end: datetime
) -> tuple[str, int]:
    """Publish a new snapshot of the item view; returns (version, rows)."""
    table, lists = read_item_view(store, start, end)
    if table.num_rows != repo.n_items:
        raise SchemaError(
            f"item snapshot: the {ITEM_VIEW} view returned {table.num_rows} items, the catalog has "
            f"{repo.n_items}; regenerate the feature repo (`cascade features generate`)"
        )
    root = repo.root / SNAPSHOT_DIR
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".tmp-{os.getpid()}-{datetime.now(timezone.utc).strftime(_TS_FORMAT)}"
    staging.mkdir()
    try:
        pq.write_table(table, staging / ITEMS_FILE)
        digest = _sha256(staging / ITEMS_FILE)
        version = _next_version(latest_version(repo.root), digest)
        meta = {  # written after items.parquet: its checksum, size, rows and schema
            "format_version": SNAPSHOT_FORMAT,
            "version": version,
            "rows": table.num_rows,
            "sha256": digest,
            "size": (staging / ITEMS_FILE).stat().st_size,
            "schema": _schema(table.schema),
            "columns": table.column_names,
            "list_columns": lists,
            "feature_view": ITEM_VIEW,
            "dataset_hash": repo.dataset_hash,
            "feature_timestamp": repo.feature_timestamp,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        (staging / SNAPSHOT_META_FILE).write_text(json.dumps(meta, indent=2))
        os.replace(staging, root / version)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    pointer = root / f".{LATEST}.tmp-{os.getpid()}"
    pointer.write_text(version + "\n")
    os.replace(pointer, root / LATEST)
    _prune(root, keep=KEEP)
    return version, table.num_rows


def _prune(root: Path, keep: int) -> None:
    versions = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in versions[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class ItemSnapshot:
    """Columnar, catalog-ordered item features (see the module docstring for the array forms).

    ``columns`` holds ``item_id`` and every feature of the ``item_features`` view.
    """

    version: str
    item_ids: np.ndarray  # int64, catalog order
    columns: dict[str, np.ndarray]
    list_columns: tuple[str, ...]

    def __post_init__(self) -> None:
        self._index = IdIndex(self.item_ids)

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    @classmethod
    def load(cls, version_dir: Path) -> "ItemSnapshot":
        """Load and validate one published version (raises :class:`InvalidSnapshotError`)."""
        version_dir = Path(version_dir)
        items = version_dir / ITEMS_FILE
        if not items.is_file():
            raise NotFoundError(f"item snapshot {version_dir} has no {ITEMS_FILE}")
        meta = _read_meta(version_dir)
        _check_file(items, meta)
        try:
            table = pq.read_table(items)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
            raise InvalidSnapshotError(f"item snapshot {items} cannot be read as Parquet: {exc}") from exc
        _check_table(items, table, meta)
        lists = tuple(meta.get("list_columns", []))
        columns = {name: numpy_column(table.column(name), name in lists) for name in table.column_names}
        item_ids = columns["item_id"].astype(np.int64, copy=False)
        if len(np.unique(item_ids)) != len(item_ids):
            raise InvalidSnapshotError(f"item snapshot {items}: item_id has duplicate values")
        columns["item_id"] = item_ids
        return cls(version=meta["version"], item_ids=item_ids, columns=columns, list_columns=lists)

    @classmethod
    def load_latest(cls, repo_dir: Path) -> "ItemSnapshot":
        version = latest_version(repo_dir)
        if version is None:
            raise NotFoundError(
                f"{Path(repo_dir) / SNAPSHOT_DIR / LATEST} is missing: no item snapshot was published "
                "(run `cascade features materialize --repo DIR`)"
            )
        return cls.load(Path(repo_dir) / SNAPSHOT_DIR / version)

    @staticmethod
    def newer_available(repo_dir: Path, current_version: str | None) -> str | None:
        """The published version when it is newer than ``current_version``, else None (cheap:
        one small file read; poll it)."""
        version = latest_version(repo_dir)
        if version is None or (current_version is not None and version <= current_version):
            return None
        return version

    def rows_for(self, item_ids: np.ndarray) -> np.ndarray:
        """Catalog row of each raw item id (int64, -1 for ids not in the catalog); vectorised."""
        return self._index.rows(item_ids)

    def gather(self, rows: np.ndarray, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """Every column (or ``columns``) at catalog ``rows`` (each 0 <= row < len); vectorised."""
        index = np.asarray(rows)
        if index.dtype.kind not in "iu":
            raise InvalidInputError(f"gather: rows must be integer catalog rows, got dtype {index.dtype}")
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise InvalidInputError(
                f"gather: rows must be in [0, {len(self)}), got min {index.min()} max {index.max()} "
                "(map unknown ids with rows_for and drop the -1 rows first)"
            )
        names = self.columns if columns is None else columns
        return {name: self.columns[name][index] for name in names}


def _read_meta(version_dir: Path) -> dict:
    path = version_dir / SNAPSHOT_META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidSnapshotError(f"item snapshot {version_dir} has no {SNAPSHOT_META_FILE} (half-written?)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSnapshotError(f"item snapshot {path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("version"), str) or not isinstance(meta.get("rows"), int):
        raise InvalidSnapshotError(f"item snapshot {path} lacks 'version' (str) and 'rows' (int)")
    return meta


def _check_file(items: Path, meta: dict) -> None:
    if "sha256" not in meta:
        LOG.warning("item snapshot %s predates checksums (no sha256 in %s): not verified", items.parent, SNAPSHOT_META_FILE)
        return
    size = items.stat().st_size
    if "size" in meta and size != meta["size"]:
        raise InvalidSnapshotError(
            f"item snapshot {items} has {size} bytes, {SNAPSHOT_META_FILE} says {meta['size']} (truncated or half-written)")
    digest = _sha256(items)
    if digest != meta["sha256"]:
        raise InvalidSnapshotError(
            f"item snapshot {items}: sha256 {digest[:12]}... does not match {SNAPSHOT_META_FILE} ({str(meta['sha256'])[:12]}...); "
            "the file is corrupt or was replaced")


def _check_table(items: Path, table: pa.Table, meta: dict) -> None:
    if table.num_rows != meta["rows"]:
        raise InvalidSnapshotError(f"item snapshot {items} has {table.num_rows} rows, {SNAPSHOT_META_FILE} says {meta['rows']}")
    if "item_id" not in table.column_names or not pa.types.is_integer(table.schema.field("item_id").type):
        raise InvalidSnapshotError(f"item snapshot {items}: column item_id (int64) is missing")
    expected = meta.get("schema")
    if expected is not None and _schema(table.schema) != expected:
        got = _schema(table.schema)
        diff = sorted(set(got.items()) ^ set(expected.items()))
        raise InvalidSnapshotError(f"item snapshot {items}: schema differs from {SNAPSHOT_META_FILE}: {diff[:4]}")
    columns = meta.get("columns")
    if columns is not None and list(table.column_names) != list(columns):
        raise InvalidSnapshotError(f"item snapshot {items}: columns {table.column_names} != {SNAPSHOT_META_FILE} columns {columns}")
