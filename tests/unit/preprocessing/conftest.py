"""A tiny canonical dataset written with DatasetWriter (independent of the synthetic generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cascade.workflows.dataset import ColumnInfo, DatasetInfo, DatasetWriter

USER_COLUMNS = [
    ColumnInfo(name="user_id", kind="id", dtype="int64"),
    ColumnInfo(name="country", kind="categorical", dtype="string"),
    ColumnInfo(name="age_bucket", kind="categorical", dtype="int64"),
    ColumnInfo(name="activity", kind="continuous", dtype="double"),
]
ITEM_COLUMNS = [
    ColumnInfo(name="item_id", kind="id", dtype="int64"),
    ColumnInfo(name="title", kind="text", dtype="string"),
    ColumnInfo(name="category", kind="categorical", dtype="string"),
    ColumnInfo(name="genres", kind="list_categorical", dtype="list<item: string>"),
    ColumnInfo(name="price", kind="continuous", dtype="double"),
    ColumnInfo(name="first_seen", kind="timestamp", dtype="int64"),
    ColumnInfo(name="available", kind="flag", dtype="bool"),
]


def make_dataset(root: Path, n_users: int = 60, n_items: int = 40, n_interactions: int = 1500, seed: int = 7) -> Path:
    """Users/items with nulls in attribute columns; train sorted by (user, timestamp); an empty test."""
    rng = np.random.default_rng(seed)
    user_ids = np.arange(1000, 1000 + n_users, dtype=np.int64)
    item_ids = np.arange(5000, 5000 + n_items, dtype=np.int64) * 3
    countries = np.array(["de", "fr", "us", "jp", "br"], dtype=object)[rng.integers(0, 5, n_users)]
    countries[::11] = None
    activity = rng.gamma(2.0, 1.0, n_users)
    activity[::13] = np.nan
    users = pd.DataFrame({
        "user_id": user_ids,
        "country": countries,
        "age_bucket": pd.array(rng.integers(1, 6, n_users), dtype="Int64"),
        "activity": activity,
    })
    users.loc[users.index[::9], "age_bucket"] = pd.NA
    genre_names = np.array(["action", "drama", "comedy", "horror", "noir", "sci-fi"], dtype=object)
    genres = [list(genre_names[rng.choice(6, size=rng.integers(0, 4), replace=False)]) for _ in range(n_items)]
    genres[3] = None
    categories = np.array(["books", "games", "music", "film"], dtype=object)[rng.integers(0, 4, n_items)]
    categories[::7] = None
    price = rng.lognormal(3.0, 1.0, n_items)
    price[::8] = np.nan
    items = pd.DataFrame({
        "item_id": item_ids,
        "title": [f"item {i}" for i in range(n_items)],
        "category": categories,
        "genres": genres,
        "price": price,
        "first_seen": rng.integers(1_600_000_000, 1_650_000_000, n_items).astype(np.int64),
        "available": rng.random(n_items) < 0.9,
    })
    popularity = rng.zipf(1.6, n_interactions) % n_items
    train = pd.DataFrame({
        "user_id": user_ids[rng.integers(0, n_users - 5, n_interactions)],  # the last 5 users never interact
        "item_id": item_ids[popularity],
        "timestamp": rng.integers(1_650_000_000, 1_660_000_000, n_interactions).astype(np.int64),
        "weight": np.ones(n_interactions, dtype=np.float32),
    }).sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    with DatasetWriter(root) as writer:
        pq.write_table(pa.Table.from_pandas(users, preserve_index=False), writer.paths.users)
        pq.write_table(pa.Table.from_pandas(items, preserve_index=False), writer.paths.items)
        pq.write_table(pa.Table.from_pandas(train, preserve_index=False), writer.paths.train, row_group_size=400)
        pq.write_table(pa.Table.from_pandas(train.iloc[:0], preserve_index=False), writer.paths.test)
        info = DatasetInfo(
            name="tiny", source="synthetic", n_users=n_users, n_items=n_items, n_train=len(train), n_test=0,
            test_fraction=0.0, time_range=(int(train.timestamp.min()), int(train.timestamp.max())),
            user_columns=USER_COLUMNS, item_columns=ITEM_COLUMNS,
        )
        writer.commit(info)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def fitted(tiny_dataset: Path):
    from cascade.preprocessing import default_workflow
    from cascade.workflows.dataset import DatasetInfo

    return default_workflow(DatasetInfo.load(tiny_dataset)).fit(tiny_dataset, batch_rows=500, progress=False)
