"""One batch of interaction events and its validation (the ``interactions`` Triton model's wire
contract, shared with ``cascade events push/ingest``).

A batch is one user's events: ``user_id`` INT64 [1], ``item_ids`` INT64 [n] (n >= 1), optional
``timestamps`` INT64 [n] (unix seconds; default: the server's clock) and ``weights`` FP32 [n]
(default 1.0). Validation is all-or-nothing: the first bad row raises an
:class:`~cascade.errors.InvalidInputError` naming the row and field, and nothing of the batch is
written or applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from cascade.errors import InvalidInputError

#: How far in the future (seconds, by the server's clock) an event timestamp may lie.
DEFAULT_FUTURE_TOLERANCE_S = 300
MAX_BATCH = 10_000


@dataclass(frozen=True)
class EventBatch:
    """A validated batch: one user, n events (arrays of equal length n >= 1)."""

    user_id: int
    item_ids: np.ndarray  # int64 [n], each >= 0 and in the catalog
    timestamps: np.ndarray  # int64 [n], unix seconds
    weights: np.ndarray  # float32 [n], finite, >= 0

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


_NUMPY = {"INT64": np.dtype(np.int64), "FP32": np.dtype(np.float32)}


def _array(inputs: Mapping[str, np.ndarray], name: str, dtype: str) -> np.ndarray | None:
    if name not in inputs or inputs[name] is None:
        return None
    value = np.asarray(inputs[name])
    if value.dtype != _NUMPY[dtype] and not (value.size == 0 and value.dtype.kind in "if"):
        raise InvalidInputError(f"input '{name}' must be {dtype}, got {value.dtype}")
    return value.reshape(-1)


def _per_event(inputs: Mapping[str, np.ndarray], name: str, dtype: str, n: int, default: float) -> np.ndarray:
    """An optional per-event input: ``default`` for every event when absent or empty, else exactly n values."""
    values = _array(inputs, name, dtype)
    if values is None or values.size == 0:
        return np.full(n, default, dtype=_NUMPY[dtype])
    if values.size != n:
        raise InvalidInputError(f"input '{name}' has {values.size} values for {n} item_ids; lengths must match")
    return values.astype(_NUMPY[dtype], copy=False)


def _refuse_rows(name: str, values: np.ndarray, bad: np.ndarray, expected: str | Callable[[object], str]) -> None:
    """InvalidInputError naming the first row where ``bad`` holds: ``row r: name[r] = v <expected>``."""
    rows = np.flatnonzero(bad)
    if rows.size:
        row = int(rows[0])
        value = values[row].item()
        raise InvalidInputError(f"row {row}: {name}[{row}] = {value} {expected(value) if callable(expected) else expected}")


def parse_batch(
    inputs: Mapping[str, np.ndarray],
    is_known_item: Callable[[np.ndarray], np.ndarray],
    now: int,
    future_tolerance_s: int = DEFAULT_FUTURE_TOLERANCE_S,
) -> EventBatch:
    """Validate the named input arrays of one request. ``is_known_item(ids) -> bool [n]`` says
    which raw item ids are in the catalog; ``now`` is the server clock (unix seconds)."""
    user = _array(inputs, "user_id", "INT64")
    if user is None:
        raise InvalidInputError("input 'user_id' is required: INT64 of shape [1]")
    if user.size != 1:
        raise InvalidInputError(f"input 'user_id' must hold exactly one INT64 value (shape [1]), got {user.size} values")
    user_id = int(user[0])
    if user_id < 0:
        raise InvalidInputError(f"input 'user_id' must be a non-negative INT64 raw user id, got {user_id}")
    items = _array(inputs, "item_ids", "INT64")
    if items is None or items.size == 0:
        raise InvalidInputError("input 'item_ids' is required: INT64 of shape [n] with n >= 1")
    n = int(items.size)
    if n > MAX_BATCH:
        raise InvalidInputError(f"input 'item_ids' holds {n} events; at most {MAX_BATCH} per request (split the batch)")
    items = items.astype(np.int64, copy=False)
    _refuse_rows("item_ids", items, items < 0, "must be a non-negative INT64 raw item id")
    unknown = ~np.asarray(is_known_item(items), dtype=bool)
    _refuse_rows("item_ids", items, unknown, f"is not in the catalog ({int(unknown.sum())} unknown item id(s) in "
                 "the batch; add items with `cascade items upsert`)")
    timestamps = _per_event(inputs, "timestamps", "INT64", n, default=now)
    _refuse_rows("timestamps", timestamps, timestamps < 0, "must be unix seconds >= 0")
    _refuse_rows("timestamps", timestamps, timestamps > now + future_tolerance_s,
                 lambda t: f"is {t - now} s in the future (server clock {now}; tolerance {future_tolerance_s} s); "
                           "send unix seconds, not milliseconds")
    weights = _per_event(inputs, "weights", "FP32", n, default=1.0)
    _refuse_rows("weights", weights, ~np.isfinite(weights) | (weights < 0), "must be a finite FP32 >= 0")
    return EventBatch(user_id, items.copy(), timestamps.copy(), weights.copy())
