"""Validation of one batch of interaction events: each error names the row and field."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.events.batch import parse_batch

NOW = 1_700_000_000
CATALOG = np.array([10, 20, 30], dtype=np.int64)


def known(ids: np.ndarray) -> np.ndarray:
    return np.isin(ids, CATALOG)


def parse(**inputs):
    return parse_batch({k: np.asarray(v) for k, v in inputs.items()}, known, NOW, future_tolerance_s=60)


def i64(*v):
    return np.array(v, dtype=np.int64)


def test_defaults_fill_timestamps_and_weights() -> None:
    batch = parse(user_id=i64(5), item_ids=i64(10, 20))
    assert batch.user_id == 5 and len(batch) == 2
    assert batch.timestamps.tolist() == [NOW, NOW]
    assert batch.weights.dtype == np.float32 and batch.weights.tolist() == [1.0, 1.0]


def test_explicit_timestamps_and_weights_are_kept() -> None:
    batch = parse(user_id=i64(5), item_ids=i64(10, 30), timestamps=i64(NOW - 5, NOW + 60),
                  weights=np.array([0.5, 2.0], np.float32))
    assert batch.timestamps.tolist() == [NOW - 5, NOW + 60]
    assert batch.weights.tolist() == [0.5, 2.0]


@pytest.mark.parametrize("inputs, message", [
    (dict(item_ids=i64(10)), "input 'user_id' is required"),
    (dict(user_id=i64(1, 2), item_ids=i64(10)), "exactly one INT64"),
    (dict(user_id=i64(-1), item_ids=i64(10)), "non-negative INT64 raw user id, got -1"),
    (dict(user_id=np.array([1], np.int32), item_ids=i64(10)), "'user_id' must be INT64"),
    (dict(user_id=i64(1)), "input 'item_ids' is required"),
    (dict(user_id=i64(1), item_ids=i64()), "n >= 1"),
    (dict(user_id=i64(1), item_ids=i64(10, -3)), "row 1: item_ids[1] = -3 must be a non-negative"),
    (dict(user_id=i64(1), item_ids=i64(10, 20, 99)), "row 2: item_ids[2] = 99 is not in the catalog"),
    (dict(user_id=i64(1), item_ids=i64(10, 20), timestamps=i64(NOW)), "'timestamps' has 1 values for 2 item_ids"),
    (dict(user_id=i64(1), item_ids=i64(10), timestamps=i64(NOW + 61)), "row 0: timestamps[0]"),
    (dict(user_id=i64(1), item_ids=i64(10, 20), timestamps=i64(NOW, NOW * 1000)), "not milliseconds"),
    (dict(user_id=i64(1), item_ids=i64(10), timestamps=i64(-5)), "row 0: timestamps[0] = -5"),
    (dict(user_id=i64(1), item_ids=i64(10, 20), weights=np.array([1.0], np.float32)), "'weights' has 1 values"),
    (dict(user_id=i64(1), item_ids=i64(10, 20), weights=np.array([1.0, np.nan], np.float32)), "row 1: weights[1]"),
    (dict(user_id=i64(1), item_ids=i64(10), weights=np.array([-1.0], np.float32)), "finite FP32 >= 0"),
])
def test_bad_batches_name_row_and_field(inputs, message) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse(**inputs)
    assert message in info.value.message
    assert info.value.grpc_code == "INVALID_ARG"
