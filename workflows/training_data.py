"""Training examples for the towers and the ranker, encoded by the fitted preprocessing workflow
(the only encoder).

Leave-future-out: for a train interaction (u, i, t) the user features are those available
*before* t: ``recent_items`` = u's distinct earlier items, most recent first (at most
HISTORY_LENGTH, the same rule as :func:`cascade.features.history.user_history`),
``seen_items`` = the distinct earlier items, ``n_interactions`` = the number of earlier
interactions. Serving uses the same definitions over the whole train part, so training and
serving see one feature distribution and nothing leaks from the future.

Validation: each user's last train interaction (users with >= 2 train interactions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from cascade.errors import DataValidationError, SchemaError
from cascade.features.history import HISTORY_LENGTH
from cascade.ids import Catalog, IdIndex

PAD = -1  # padding of 2-D raw-id list inputs (cascade.preprocessing.values.LIST_PAD_INT)
HISTORY_COLUMNS = {"recent_items", "seen_items", "n_interactions"}


# --------------------------------------------------------------------------- workflow access
def workflow_inputs(fitted: Any, entity: str) -> list[Any]:
    """The raw input columns (``InputColumn``) the fitted workflow reads for ``entity``."""
    for attr in ("input_columns", "inputs", "input_schema"):
        value = getattr(fitted, attr, None)
        if value is None:
            continue
        columns = value(entity) if callable(value) else value
        columns = list(columns)
        return [c for c in columns if getattr(c, "entity", entity) == entity]
    raise SchemaError("the fitted workflow exposes no input columns (expected input_columns(entity))")


def output_specs(fitted: Any) -> list[Any]:
    from cascade.models.features import specs_from_schema

    return specs_from_schema(fitted.output_schema())


def transform_chunked(fitted: Any, columns: dict[str, np.ndarray], entity: str, chunk: int = 65_536) -> dict[str, np.ndarray]:
    """``fitted.transform_batch`` over row chunks, concatenated."""
    n = len(next(iter(columns.values()))) if columns else 0
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, max(n, 1), chunk):
        parts.append(fitted.transform_batch({k: v[start:start + chunk] for k, v in columns.items()}, entity))
        if n == 0:
            break
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------- histories
def user_segments(users_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boundaries = np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1
    starts = np.concatenate(([0], boundaries)).astype(np.int64)
    ends = np.concatenate((boundaries, [len(users_sorted)])).astype(np.int64)
    return starts, ends


def _dedupe_rows(values: np.ndarray, length: int) -> np.ndarray:
    """Keep the first occurrence of each id per row (PAD ignored), left-compacted, width ``length``."""
    n, w = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    sorted_vals = np.take_along_axis(values, order, axis=1)
    dup_sorted = np.zeros_like(sorted_vals, dtype=bool)
    dup_sorted[:, 1:] = sorted_vals[:, 1:] == sorted_vals[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    keep = (values != PAD) & ~dup
    compact = np.argsort(~keep, axis=1, kind="stable")[:, :length]
    out = np.take_along_axis(values, compact, axis=1)
    out[~np.take_along_axis(keep, compact, axis=1)] = PAD
    if out.shape[1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[1])), constant_values=PAD)
    return out


def prior_histories(
    users: np.ndarray, items: np.ndarray, rows: np.ndarray, length: int = HISTORY_LENGTH,
    window: int | None = None, chunk: int = 50_000,
) -> tuple[np.ndarray, np.ndarray]:
    """For interaction rows ``rows`` of the (user, time)-sorted arrays: the distinct items the user
    had before that row, most recent first, ``[len(rows), length]`` padded with PAD, and the number
    of earlier interactions. ``window`` earlier interactions are scanned (default 2 x length)."""
    window = window or 2 * length
    starts, _ = user_segments(users)
    seg = np.searchsorted(starts, rows, side="right") - 1
    first = starts[seg]
    out = np.full((len(rows), length), PAD, dtype=np.int64)
    offsets = np.arange(1, window + 1, dtype=np.int64)
    for lo in range(0, len(rows), chunk):
        r = rows[lo:lo + chunk]
        idx = r[:, None] - offsets[None, :]
        valid = idx >= first[lo:lo + chunk, None]
        vals = np.where(valid, items[np.maximum(idx, 0)], PAD)
        out[lo:lo + chunk] = _dedupe_rows(vals, length)
    return out, (rows - first).astype(np.int64)


# --------------------------------------------------------------------------- catalog
class EncodedCatalog(Catalog):
    """The catalog (items.parquet order; catalog row i = index row i) with what training needs per
    row: the encoded item-entity workflow outputs, train popularity and availability."""

    def __init__(self, item_ids: np.ndarray, features: dict[str, np.ndarray], popularity: np.ndarray,
                 available: np.ndarray) -> None:
        super().__init__(item_ids)
        self.features = features  # encoded item-entity workflow outputs per row
        self.popularity = popularity  # float32 train interaction count per row
        self.available = available  # bool

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[rows] for k, v in self.features.items()}


def raw_entity_columns(table: pd.DataFrame, inputs: list[Any], extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The raw columns ``inputs`` asks for, from ``extra`` first, else from ``table``."""
    extra = extra or {}
    out: dict[str, np.ndarray] = {}
    for column in inputs:
        if column.name in extra:
            out[column.name] = extra[column.name]
        elif column.name in table.columns:
            out[column.name] = table[column.name].to_numpy()
        else:
            raise SchemaError(f"workflow input column {column.name!r} is neither in the table nor derived")
    return out


def build_catalog(fitted: Any, items: pd.DataFrame, train: pd.DataFrame) -> EncodedCatalog:
    item_ids = items["item_id"].to_numpy(np.int64)
    features = transform_chunked(fitted, raw_entity_columns(items, workflow_inputs(fitted, "item")), "item")
    catalog = EncodedCatalog(
        item_ids=item_ids, features=features, popularity=np.zeros(len(items), np.float32),
        available=items["available"].to_numpy(bool) if "available" in items else np.ones(len(items), bool),
    )
    rows = catalog.rows(train["item_id"].to_numpy(np.int64))
    if (rows < 0).any():
        bad = train["item_id"].to_numpy()[rows < 0][0]
        raise DataValidationError(f"train.parquet: item_id {bad} is not in items.parquet")
    catalog.popularity = np.bincount(rows, minlength=len(items)).astype(np.float32)
    return catalog


# --------------------------------------------------------------------------- user features
def _list_object(matrix: np.ndarray) -> np.ndarray:
    out = np.empty(len(matrix), dtype=object)
    out[:] = [row[row != PAD] for row in matrix]
    return out


def encode_users(
    fitted: Any, users: pd.DataFrame, user_rows: np.ndarray, recent: np.ndarray, n_interactions: np.ndarray,
    seen: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Encode user-entity features: attributes of ``users`` rows ``user_rows`` (-1 = unknown user,
    null attributes) plus the given history (2-D raw ids padded with PAD)."""
    inputs = workflow_inputs(fitted, "user")
    safe = np.maximum(user_rows, 0)
    known = user_rows >= 0
    extra: dict[str, np.ndarray] = {
        "recent_items": recent,
        "seen_items": seen if seen is not None else recent,
        "n_interactions": n_interactions.astype(np.int64),
    }
    columns: dict[str, np.ndarray] = {}
    for column in inputs:
        if column.name in extra:
            columns[column.name] = extra[column.name]
            continue
        if column.name == "user_id":
            columns[column.name] = users["user_id"].to_numpy(np.int64)[safe]
            continue
        if column.name not in users.columns:
            raise SchemaError(f"workflow user input {column.name!r} is not in users.parquet")
        values = users[column.name].to_numpy()[safe]
        if not known.all():
            values = values.astype(object) if values.dtype.kind not in "f" else values.copy()
            values[~known] = None if values.dtype == object else np.nan
        columns[column.name] = values
    return transform_chunked(fitted, columns, "user")


def user_rows_of(users: pd.DataFrame, user_ids: np.ndarray) -> np.ndarray:
    return IdIndex(users["user_id"].to_numpy(np.int64)).rows(user_ids)


def serving_user_raw(history: pd.DataFrame, user_ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recent [n, length], seen [n, W], n_interactions [n]) raw, PAD-padded, from the train
    history table of :func:`user_history` — the values Feast serves."""
    hist = history.set_index("user_id")
    recent = np.full((len(user_ids), length), PAD, np.int64)
    counts = np.zeros(len(user_ids), np.int64)
    seen_rows: list[np.ndarray] = []
    present = hist.index.get_indexer(user_ids)
    rec_col = hist["recent_items"].to_numpy()
    seen_col = hist["seen_items"].to_numpy()
    cnt_col = hist["n_interactions"].to_numpy()
    for i, p in enumerate(present):
        if p < 0:
            seen_rows.append(np.zeros(0, np.int64))
            continue
        r = np.asarray(rec_col[p], np.int64)[:length]
        recent[i, : len(r)] = r
        seen_rows.append(np.asarray(seen_col[p], np.int64))
        counts[i] = cnt_col[p]
    width = max([len(s) for s in seen_rows] + [1])
    seen = np.full((len(user_ids), width), PAD, np.int64)
    for i, s in enumerate(seen_rows):
        seen[i, : len(s)] = s
    return recent, seen, counts


# --------------------------------------------------------------------------- examples
@dataclass
class Examples:
    user_ids: np.ndarray             # raw
    item_rows: np.ndarray            # catalog row of the positive
    timestamps: np.ndarray
    weights: np.ndarray              # float32
    history: np.ndarray              # raw earlier distinct items [N, L] (PAD-padded), for exclusion
    features: dict[str, np.ndarray]  # encoded user-entity outputs per example

    def __len__(self) -> int:
        return len(self.item_rows)

    def subset(self, rows: np.ndarray) -> "Examples":
        return Examples(
            self.user_ids[rows], self.item_rows[rows], self.timestamps[rows], self.weights[rows],
            self.history[rows], {k: v[rows] for k, v in self.features.items()},
        )


@dataclass
class TrainingData:
    """``train``: retrieval examples; ``rank``: held out from retrieval (each user's interactions just
    before the last), the ranker's positives, so their retrieval scores are not inflated by fitting;
    ``val``: each user's last train interaction (early stopping of both models)."""

    catalog: EncodedCatalog
    train: Examples
    val: Examples
    specs: list[Any]
    rank: Examples | None = None


def load_tables(data_dir: Path) -> tuple[Any, Any, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from cascade.workflows.dataset import load_dataset

    paths, info = load_dataset(Path(data_dir))
    users = pd.read_parquet(paths.users)
    items = pd.read_parquet(paths.items)
    train = pd.read_parquet(paths.train)
    if not train.empty:
        order = np.lexsort((np.arange(len(train)), train["timestamp"].to_numpy(), train["user_id"].to_numpy()))
        if not np.array_equal(order, np.arange(len(train))):
            train = train.iloc[order].reset_index(drop=True)
    if "weight" not in train:
        train["weight"] = np.float32(1.0)
    return paths, info, users, items, train


def build_examples(
    fitted: Any, users: pd.DataFrame, train: pd.DataFrame, catalog: EncodedCatalog, rows: np.ndarray,
    length: int = HISTORY_LENGTH,
) -> Examples:
    """Leave-future-out examples for interaction ``rows`` of the sorted ``train`` table."""
    u = train["user_id"].to_numpy(np.int64)
    items = train["item_id"].to_numpy(np.int64)
    recent, n_before = prior_histories(u, items, rows, length)
    seen = None
    if any(c.name == "seen_items" for c in workflow_inputs(fitted, "user")):
        big = np.iinfo(np.int64).max
        seen = np.sort(np.where(recent == PAD, big, recent), axis=1)  # distinct earlier items, ascending
        seen[seen == big] = PAD
    features = encode_users(fitted, users, user_rows_of(users, u[rows]), recent, n_before, seen)
    return Examples(
        user_ids=u[rows], item_rows=catalog.rows(items[rows]), timestamps=train["timestamp"].to_numpy(np.int64)[rows],
        weights=train["weight"].to_numpy(np.float32)[rows], history=recent, features=features,
    )


def split_rows(
    train: pd.DataFrame, rank_holdout: int = 0, rank_fraction: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(retrieval rows, ranking rows, validation rows): validation = each user's last train
    interaction when the user has at least 2; ranking = up to ``rank_holdout`` interactions just
    before it (with ``rank_fraction``: up to min(rank_holdout, ceil(rank_fraction x n))), always
    leaving at least one for retrieval; retrieval = the rest."""
    u = train["user_id"].to_numpy(np.int64)
    if len(u) == 0:
        raise DataValidationError("train.parquet has no interactions to train on")
    starts, ends = user_segments(u)
    sizes = ends - starts
    from_end = np.repeat(ends, sizes) - 1 - np.arange(len(u))
    size = np.repeat(sizes, sizes)
    is_val = (from_end == 0) & (size >= 2)
    cap = np.full(len(u), rank_holdout, np.int64)
    if rank_fraction is not None:
        cap = np.minimum(cap, np.ceil(rank_fraction * size).astype(np.int64))
    n_rank = np.clip(size - 2, 0, cap)
    is_rank = (from_end >= 1) & (from_end <= n_rank)
    return np.flatnonzero(~is_val & ~is_rank), np.flatnonzero(is_rank), np.flatnonzero(is_val)


def batches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for lo in range(0, n, batch_size):
        yield order[lo:lo + batch_size]


def prepare(
    fitted: Any, data_dir: Path, length: int = HISTORY_LENGTH, progress: bool = False, rank_holdout: int = 10,
    rank_fraction: float | None = 0.1,
) -> TrainingData:
    """Catalog + leave-future-out retrieval/ranking/validation examples for the dataset at ``data_dir``."""
    _, _, users, items, train = load_tables(data_dir)
    catalog = build_catalog(fitted, items, train)
    train_rows, rank_rows, val_rows = split_rows(train, rank_holdout, rank_fraction)
    hist_len = length
    for spec in fitted.output_schema("user"):
        if spec.name == "recent_items" and spec.list_length:
            hist_len = int(spec.list_length)
    return TrainingData(
        catalog=catalog,
        train=build_examples(fitted, users, train, catalog, train_rows, hist_len),
        val=build_examples(fitted, users, train, catalog, val_rows, hist_len),
        specs=output_specs(fitted),
        rank=build_examples(fitted, users, train, catalog, rank_rows, hist_len) if len(rank_rows) else None,
    )
