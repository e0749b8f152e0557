"""Catalog upserts on the item source, and the scheduled publish that skips an unchanged catalog
(real Feast on a temp SQLite repo)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "features"))
from tiny_dataset import write_tiny_dataset  # noqa: E402

from cascade.errors import DataValidationError, SchemaError  # noqa: E402
from cascade.events.items import _conform, merge_items, publish_if_changed, read_items_file  # noqa: E402
from cascade.features.repo import ITEM_SOURCE, SNAPSHOT_DIR, generate_feature_repo  # noqa: E402
from cascade.features.snapshot import ItemSnapshot, latest_version  # noqa: E402
from cascade.features.store import apply, materialize  # noqa: E402


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared; only the last test (publish) changes it."""
    root = tmp_path_factory.mktemp("items")
    write_tiny_dataset(root / "tiny")
    generate_feature_repo(root / "tiny", root / "repo")
    apply(root / "repo")
    materialize(root / "repo")
    return root / "repo"


def test_merge_updates_given_columns_and_appends_new_items(repo: Path, tmp_path: Path) -> None:
    source = pq.read_table(repo / ITEM_SOURCE)
    path = tmp_path / "up.csv"
    pd.DataFrame({"item_id": [20, 70], "category": ["new", "w"], "price": [9, 1.5]}).to_csv(path, index=False)
    updates = _conform(read_items_file(path), source.schema, path)
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    merged, added, updated = merge_items(source, updates, now)
    assert (added, updated) == ([70], [20])
    rows = merged.to_pandas().set_index("item_id")
    assert rows.loc[20, "category"] == "new" and rows.loc[20, "price"] == 9.0
    assert rows.loc[20, "title"] == "b"  # a column the file did not give is kept
    assert rows.loc[70, "catalog_row"] == source.num_rows and bool(rows.loc[70, "available"]) is True
    assert rows.loc[70, "title"] is None
    assert rows.loc[10, "event_timestamp"] < rows.loc[70, "event_timestamp"]


@pytest.mark.parametrize("frame, error, message", [
    (pd.DataFrame({"id": [1]}), DataValidationError, "'item_id' is missing"),
    (pd.DataFrame({"item_id": [1, 1]}), DataValidationError, "item_id 1 appears more than once"),
    (pd.DataFrame({"item_id": [5, -2]}), DataValidationError, "row 1: item_id -2"),
    (pd.DataFrame({"item_id": [5], "colour": ["red"]}), SchemaError, "unknown column(s) ['colour']"),
    (pd.DataFrame({"item_id": [5], "price": ["cheap"]}), SchemaError, "column 'price'"),
])
def test_bad_item_files_are_named(repo: Path, tmp_path: Path, frame, error, message) -> None:
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path, index=False)
    source = pq.read_table(repo / ITEM_SOURCE)
    with pytest.raises(error) as info:
        _conform(read_items_file(path), source.schema, path)
    assert message in info.value.message


def test_scheduled_publish_skips_an_unchanged_catalog(repo: Path) -> None:
    published = latest_version(repo)
    result = publish_if_changed(repo)
    assert not result.changed and result.snapshot_version == published
    assert (repo / SNAPSHOT_DIR / "UNCHANGED").is_file()
    source = pq.read_table(repo / ITEM_SOURCE)
    price = source.column("price").to_pylist()
    price[0] = 123.0
    pq.write_table(source.set_column(source.schema.get_field_index("price"), "price",
                                     pa.array(price, source.schema.field("price").type)), repo / ITEM_SOURCE)
    result = publish_if_changed(repo)
    assert result.changed and result.snapshot_version > published
    assert not (repo / SNAPSHOT_DIR / "UNCHANGED").exists()
    snapshot = ItemSnapshot.load_latest(repo)
    assert 123.0 in np.asarray(snapshot.columns["price"]).tolist()
