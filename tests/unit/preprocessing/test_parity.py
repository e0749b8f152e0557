"""The offline path (transform_dataset over Parquet, chunked) and the online path (transform_batch
over numpy, in the forms Feast / Triton deliver) give bit-identical outputs, including unseen
categories, unseen ids and nulls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cascade.preprocessing import FittedWorkflow
from cascade.workflows.dataset import DatasetWriter, load_dataset


@pytest.fixture(scope="module")
def serving_dataset(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset plus users/items with values the fit never saw (same train split)."""
    paths, info = load_dataset(tiny_dataset)
    users = pd.read_parquet(paths.users)
    items = pd.read_parquet(paths.items)
    new_users = pd.DataFrame({
        "user_id": [10**12, 77], "country": ["atlantis", None],
        "age_bucket": pd.array([42, None], dtype="Int64"), "activity": [1e9, None],
    })
    new_items = pd.DataFrame({
        "item_id": [987654321, -5], "title": ["new", None], "category": ["unseen-cat", None],
        "genres": [["drama", "unseen-genre", "noir", "a", "b", "c", "d", "e", "f"], None],
        "price": [np.nan, -1e12], "first_seen": [2_000_000_000, 0], "available": [True, False],
    })
    root = tmp_path_factory.mktemp("serving") / "data"
    with DatasetWriter(root) as writer:
        pq.write_table(pa.Table.from_pandas(pd.concat([users, new_users], ignore_index=True), preserve_index=False), writer.paths.users)
        pq.write_table(pa.Table.from_pandas(pd.concat([items, new_items], ignore_index=True), preserve_index=False), writer.paths.items)
        for name in ("train", "test"):
            pq.write_table(pq.read_table(getattr(paths, name)), getattr(writer.paths, name))
        writer.commit(info)
    return root


def assert_bit_identical(offline: dict[str, np.ndarray], online: dict[str, np.ndarray]) -> None:
    assert list(offline) == list(online)
    for name in offline:
        a, b = offline[name], online[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


def online_batches(fitted: FittedWorkflow, entity: str, columns: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    parts = [fitted.transform_batch({k: v[s:s + size] for k, v in columns.items()}, entity) for s in range(0, n, size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def test_item_parity(fitted: FittedWorkflow, serving_dataset: Path):
    offline = fitted.transform_dataset(serving_dataset, "item", batch_rows=16, progress=False)
    items = pd.read_parquet(load_dataset(serving_dataset)[0].items)
    assert offline.ids.tolist() == items.item_id.tolist()
    online_columns = {  # as the item feature snapshot / Feast hand them over: lists of python objects, None
        "item_id": items.item_id.to_numpy(np.int64),
        "category": object_array([None if pd.isna(v) else v for v in items.category]),
        "genres": object_array([None if v is None else list(v) for v in items.genres]),
        "price": items.price.to_numpy(np.float64),
        "first_seen": items.first_seen.to_numpy(np.int64),
        "title": items.title.to_numpy(), "available": items.available.to_numpy(),  # extra columns are ignored
    }
    online = online_batches(fitted, "item", online_columns, size=7)
    assert_bit_identical(offline.columns, online)
    card = {s.name: s for s in fitted.output_schema("item")}
    n_oov = fitted.categorify("item_id").num_oov_buckets
    new = offline.columns["item_id"][-2:]
    assert ((new >= 1) & (new <= n_oov)).all()  # unseen ids -> OOV buckets
    assert offline.columns["category"][-1] == 0  # null -> 0
    assert 1 <= offline.columns["category"][-2] <= fitted.categorify("category").num_oov_buckets
    assert offline.columns["genres"][-1].tolist() == [0] * card["genres"].list_length  # null list
    assert (offline.columns["genres"][-2] != 0).all()  # truncated to 8, all present
    assert offline.columns["price"][-1] == -5.0  # clipped
    for spec in card.values():
        if spec.kind == "categorical":
            assert offline.columns[spec.name].max() < spec.cardinality


def test_user_parity(fitted: FittedWorkflow, serving_dataset: Path):
    from cascade.features.history import load_user_history

    paths, _ = load_dataset(serving_dataset)
    offline = fitted.transform_dataset(serving_dataset, "user", batch_rows=16, progress=False)
    users = pd.read_parquet(paths.users)
    history = load_user_history(paths.train).set_index("user_id").reindex(users.user_id)
    recent = [None if not isinstance(v, np.ndarray) else [int(x) for x in v] for v in history.recent_items]
    width = max(len(v) for v in recent if v)
    padded = np.full((len(recent), width), -1, dtype=np.int64)  # 2-D form, padded with -1
    for row, values in enumerate(recent):
        padded[row, : len(values or [])] = values or []
    base = {
        "user_id": users.user_id.to_numpy(np.int64),
        "country": object_array([None if pd.isna(v) else v for v in users.country]),
        "age_bucket": object_array([None if pd.isna(v) else int(v) for v in users.age_bucket]),  # Feast: None for null
        "activity": users.activity.to_numpy(np.float64),
        "n_interactions": history.n_interactions.fillna(0).to_numpy(np.int64),
    }
    for form in (object_array(recent), padded):
        online = online_batches(fitted, "user", {**base, "recent_items": form}, size=5)
        assert_bit_identical(offline.columns, online)
    assert offline.columns["user_id"][-2] <= fitted.categorify("user_id").num_oov_buckets  # unseen user
    assert offline.columns["country"][-1] == 0 and offline.columns["age_bucket"][-1] == 0
    assert offline.columns["recent_items"][-5:].sum() == 0  # users without train history
    assert offline.columns["activity"][-2] == 5.0  # clipped


def test_recent_items_share_item_vocabulary(fitted: FittedWorkflow, tiny_dataset: Path):
    paths, _ = load_dataset(tiny_dataset)
    ids = pd.read_parquet(paths.items).item_id.to_numpy(np.int64)
    ids = np.concatenate([ids, [123456789]])
    item_codes = fitted.transform_batch(
        {"item_id": ids, "category": np.full(len(ids), None, dtype=object), "genres": np.full(len(ids), None, dtype=object),
         "price": np.zeros(len(ids)), "first_seen": np.zeros(len(ids), dtype=np.int64)}, "item")["item_id"]
    user = fitted.transform_batch(
        {"user_id": np.zeros(len(ids), dtype=np.int64), "country": np.full(len(ids), None, dtype=object),
         "age_bucket": np.zeros(len(ids), dtype=np.int64), "activity": np.zeros(len(ids)),
         "n_interactions": np.zeros(len(ids), dtype=np.int64), "recent_items": ids[:, None]}, "user")
    assert user["recent_items"][:, 0].tolist() == item_codes.tolist()
    assert user["recent_items"].shape == (len(ids), 50)
