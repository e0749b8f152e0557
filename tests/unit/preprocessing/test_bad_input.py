"""Bad input: clear SchemaErrors naming the column and the expected dtype; never a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cascade.errors import SchemaError
from cascade.preprocessing import FittedWorkflow, default_workflow
from cascade.workflows.dataset import DatasetInfo


def items(n: int = 3, **overrides):
    columns = {
        "item_id": np.arange(n, dtype=np.int64), "category": np.array(["books"] * n, dtype=object),
        "genres": np.full(n, None, dtype=object), "price": np.ones(n), "first_seen": np.zeros(n, dtype=np.int64),
    }
    columns.update(overrides)
    return {k: v for k, v in columns.items() if v is not None}


def test_missing_column_names_column_and_dtype(fitted: FittedWorkflow):
    with pytest.raises(SchemaError, match=r"item input column 'price' is missing; expected float64"):
        fitted.transform_batch(items(price=None), "item")
    with pytest.raises(SchemaError, match=r"'recent_items' is missing; expected list of int64"):
        fitted.transform_batch(
            {"user_id": np.zeros(1, dtype=np.int64), "country": np.array(["de"], dtype=object),
             "age_bucket": np.ones(1, dtype=np.int64), "activity": np.ones(1), "n_interactions": np.ones(1, dtype=np.int64)},
            "user",
        )


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("item_id", np.array(["a", "b", "c"], dtype=object), r"'item_id' has object values of type string; expected int64"),
        ("item_id", np.array([1.5, 2.0, 3.0]), r"'item_id' has non-integral float values; expected int64"),
        ("item_id", np.array([True, False, True]), r"'item_id' has dtype bool; expected int64"),
        ("item_id", np.zeros((3, 2), dtype=np.int64), r"'item_id' has shape \(3, 2\); expected int64"),
        ("category", np.array([1, 2, 3]), r"'category' has dtype int64; expected string"),
        ("price", np.array(["1", "2", "3"]), r"'price' has dtype <U1; expected float64"),
        ("genres", np.array([1, 2, 3]), r"'genres' has a 1-D int64 array; expected list of string"),
        ("genres", np.array([[1], 2, "x"], dtype=object), r"'genres' has elements that are not lists of string"),
        ("item_id", np.arange(2), r"'category' has 2 rows but 'item_id' has 3"),
    ],
)
def test_wrong_dtype_names_column_and_dtype(fitted: FittedWorkflow, column, value, expected):
    overrides = {column: value}
    if column == "item_id" and len(value) == 2:
        overrides = {"category": np.array(["x", "y"], dtype=object)}
    with pytest.raises(SchemaError, match=expected):
        fitted.transform_batch(items(**overrides), "item")


def test_bad_entity_and_container(fitted: FittedWorkflow):
    with pytest.raises(SchemaError, match="entity must be 'user' or 'item'"):
        fitted.transform_batch(items(), "shop")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="dict of column name"):
        fitted.transform_batch([1, 2], "item")  # type: ignore[arg-type]


def test_empty_batch_and_out_of_range(fitted: FittedWorkflow):
    out = fitted.transform_batch(items(0), "item")
    assert all(len(v) == 0 for v in out.values()) and out["genres"].shape == (0, 8)
    out = fitted.transform_batch(items(2, price=np.array([1e300, -np.inf]), first_seen=np.array([-10**15, 10**15])), "item")
    assert out["price"].tolist() == [5.0, -5.0]
    assert np.isfinite(out["first_seen_age"]).all()


def _copy_with(tmp_path: Path, tiny_dataset: Path, table: str, frame_edit) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(tiny_dataset, root)
    frame = pd.read_parquet(root / table)
    pq.write_table(pa.Table.from_pandas(frame_edit(frame), preserve_index=False), root / table)
    return root


def test_fit_missing_attribute_column(tmp_path: Path, tiny_dataset: Path):
    root = _copy_with(tmp_path, tiny_dataset, "items.parquet", lambda f: f.drop(columns=["price"]))
    with pytest.raises(SchemaError, match=r"items.parquet: item column 'price' is missing; expected float64"):
        default_workflow(DatasetInfo.load(root)).fit(root, progress=False)


def test_fit_wrong_dtype_and_missing_train_column(tmp_path: Path, tiny_dataset: Path):
    root = _copy_with(tmp_path, tiny_dataset, "users.parquet", lambda f: f.assign(activity=f.user_id.astype(str)))
    with pytest.raises(SchemaError, match=r"user column 'activity' has object values of type string; expected float64"):
        default_workflow(DatasetInfo.load(root)).fit(root, progress=False)
    root2 = tmp_path / "t"
    shutil.copytree(tiny_dataset, root2)
    pq.write_table(pq.read_table(root2 / "train.parquet").drop(["timestamp"]), root2 / "train.parquet")
    with pytest.raises(SchemaError, match=r"train.parquet: column 'timestamp' is missing; expected int64"):
        default_workflow(DatasetInfo.load(root2)).fit(root2, progress=False)
