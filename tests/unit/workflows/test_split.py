"""Temporal split: per-user ceil(f x n) latest interactions are test, ties by input order."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cascade.errors import InvalidInputError
from cascade.workflows.split import (
    is_test_sorted,
    n_test_per_user,
    split_interactions,
    temporal_order,
    validate_test_fraction,
)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.9])
def test_counts_are_ceil_at_least_one(fraction: float) -> None:
    n = np.arange(1, 101)
    expected = [max(1, math.ceil(round(fraction * k, 9))) for k in n]
    assert n_test_per_user(n, fraction).tolist() == expected


def test_float_noise_does_not_add_an_interaction() -> None:
    assert n_test_per_user(np.array([10]), 0.7).tolist() == [7]  # 0.7 * 10 = 7.000000000000001
    assert n_test_per_user(np.array([5, 10, 1]), 0.2).tolist() == [1, 2, 1]


def test_zero_fraction_keeps_everything_in_train() -> None:
    assert n_test_per_user(np.array([1, 5, 9]), 0.0).tolist() == [0, 0, 0]
    frame = pd.DataFrame({"user_id": [3, 3, 1], "item_id": [1, 2, 3], "timestamp": [5, 4, 1]})
    train, test = split_interactions(frame, 0.0)
    assert len(train) == 3 and len(test) == 0
    assert list(test.columns) == list(frame.columns)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "x"])
def test_fraction_outside_range_names_the_flag(bad) -> None:
    with pytest.raises(InvalidInputError, match="--test-fraction"):
        validate_test_fraction(bad)


def test_ties_keep_input_order_and_last_rows_are_test() -> None:
    frame = pd.DataFrame({
        "user_id": [7, 7, 7, 7, 7, 2],
        "item_id": [10, 11, 12, 13, 14, 20],
        "timestamp": [100, 50, 100, 100, 10, 1],
    })
    train, test = split_interactions(frame, 0.5)
    # user 7 sorted: t10 (14), t50 (11), t100 in input order 10, 12, 13; ceil(0.5 x 5) = 3 test
    assert train["item_id"].tolist() == [14, 11]
    assert test["item_id"].tolist() == [20, 10, 12, 13]  # user 2 has one interaction -> test
    assert (test["user_id"].diff().fillna(0) >= 0).all()


def test_order_and_mask_on_random_data() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, size=2000)
    times = rng.integers(0, 30, size=2000)
    order = temporal_order(users, times)
    u, t = users[order], times[order]
    assert np.all((np.diff(u) > 0) | ((np.diff(u) == 0) & (np.diff(t) >= 0)))
    ties = (np.diff(u) == 0) & (np.diff(t) == 0)
    assert np.all(np.diff(order)[ties] > 0)  # input order among equal timestamps
    mask = is_test_sorted(u, 0.2)
    for user in np.unique(u):
        rows = np.flatnonzero(u == user)
        k = math.ceil(round(0.2 * rows.size, 9))
        assert mask[rows].tolist() == [False] * (rows.size - k) + [True] * k


def test_global_time_split_one_cut_for_everyone() -> None:
    from cascade.workflows.split import global_cut_time

    frame = pd.DataFrame({
        "user_id": [1, 1, 1, 2, 2, 3, 3, 3],
        "item_id": [10, 11, 12, 10, 13, 11, 12, 14],
        "timestamp": [1, 5, 9, 2, 3, 6, 7, 8],
    })
    train, test = split_interactions(frame, 0.25, "global-time")  # last ceil(0.25 x 8) = 2 rows -> T = 8
    assert global_cut_time(frame["timestamp"].to_numpy(), 0.25) == 8
    assert sorted(test["timestamp"].tolist()) == [8, 9] and train["timestamp"].max() < 8
    assert test["user_id"].tolist() == [1, 3]  # user 2 has no test rows; sorted by (user, time)
    same, none = split_interactions(frame, 0.0, "global-time")
    assert len(same) == 8 and none.empty


def test_global_time_split_ties_at_the_cut_go_to_test_and_empty_train_is_refused() -> None:
    from cascade.errors import DataValidationError, InvalidInputError

    frame = pd.DataFrame({"user_id": [1, 2, 3, 4], "item_id": [1, 2, 3, 4], "timestamp": [1, 2, 2, 2]})
    train, test = split_interactions(frame, 0.25, "global-time")
    assert len(test) == 3 and train["timestamp"].tolist() == [1]
    with pytest.raises(DataValidationError, match="--split global-time"):
        split_interactions(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "timestamp": [5, 5]}), 0.5, "global-time")
    with pytest.raises(InvalidInputError, match="--split"):
        split_interactions(frame, 0.25, "random")
