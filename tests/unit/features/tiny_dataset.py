"""A hand-checkable canonical dataset for the Feast tests (written through DatasetWriter)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.workflows.dataset import ColumnInfo, DatasetInfo, DatasetWriter

# Catalog order is deliberately NOT sorted by id.
ITEM_IDS = [30, 10, 50, 20, 40, 60]
T0 = 1_700_000_000

# (user, item, timestamp), already sorted by (user_id, timestamp).
TRAIN = [
    (1, 10, T0 + 1), (1, 20, T0 + 2), (1, 10, T0 + 3), (1, 30, T0 + 4),
    (2, 50, T0 + 5), (2, 40, T0 + 6),
    (5, 60, T0 + 9),
]
TEST = [(1, 40, T0 + 10), (3, 20, T0 + 11)]


def write_tiny_dataset(target: Path) -> DatasetInfo:
    users = pa.table({
        "user_id": pa.array([1, 2, 3, 5], pa.int64()),
        "age_bucket": pa.array(["18-24", "25-34", None, "35-44"]),
        "country": pa.array(["DE", "US", "FR", "US"]).dictionary_encode(),
        "activity": pa.array([0.5, 1.5, None, 2.0], pa.float64()),
    })
    items = pa.table({
        "item_id": pa.array(ITEM_IDS, pa.int64()),
        "title": pa.array(["c", "a", "e", "b", "d", "f"]),
        "category": pa.array(["x", "y", "x", "z", "y", None]),
        "genres": pa.array([["Drama"], ["Comedy", "Drama"], [], ["Action"], None, ["Comedy"]],
                           pa.list_(pa.string())),
        "price": pa.array([1.0, 2.5, 3.0, None, 5.0, 6.0], pa.float64()),
        "first_seen": pa.array([T0 - 30, T0 - 10, T0 - 50, T0 - 20, T0 - 40, T0 - 60], pa.int64()),
        "available": pa.array([True, True, False, True, True, True]),
    })

    def interactions(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")
        frame["weight"] = pd.Series([1.0] * len(frame), dtype="float32")
        return frame

    with DatasetWriter(target) as writer:
        pq.write_table(users, writer.paths.users)
        pq.write_table(items, writer.paths.items)
        interactions(TRAIN).to_parquet(writer.paths.train, index=False)
        interactions(TEST).to_parquet(writer.paths.test, index=False)
        info = DatasetInfo(
            name="tiny",
            source="import",
            n_users=4,
            n_items=len(ITEM_IDS),
            n_train=len(TRAIN),
            n_test=len(TEST),
            test_fraction=0.2,
            time_range=(T0 + 1, T0 + 11),
            user_columns=[
                ColumnInfo(name="user_id", kind="id", dtype="int64"),
                ColumnInfo(name="age_bucket", kind="categorical", dtype="string"),
                ColumnInfo(name="country", kind="categorical", dtype="dictionary<values=string, indices=int32>"),
                ColumnInfo(name="activity", kind="continuous", dtype="double"),
            ],
            item_columns=[
                ColumnInfo(name="item_id", kind="id", dtype="int64"),
                ColumnInfo(name="title", kind="text", dtype="string"),
                ColumnInfo(name="category", kind="categorical", dtype="string"),
                ColumnInfo(name="genres", kind="list_categorical", dtype="list<item: string>"),
                ColumnInfo(name="price", kind="continuous", dtype="double"),
                ColumnInfo(name="first_seen", kind="timestamp", dtype="int64"),
                ColumnInfo(name="available", kind="flag", dtype="bool"),
            ],
        )
        return writer.commit(info)
