"""Leave-future-out histories equal the serving definition (cascade.features.history) at each point."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cascade.features.history import user_history
from cascade.workflows.training_data import PAD, prior_histories, split_rows


def _train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), rng.integers(1, 40, size=30))
    return pd.DataFrame({
        "user_id": users, "item_id": rng.integers(0, 15, size=len(users)),
        "timestamp": np.arange(len(users)), "weight": np.ones(len(users), np.float32),
    })


def test_prior_history_matches_user_history_of_the_past() -> None:
    train = _train()
    u, items = train["user_id"].to_numpy(), train["item_id"].to_numpy()
    rows = np.arange(len(train))
    recent, n_before = prior_histories(u, items, rows, length=10, window=60)
    for r in rows[::3]:
        past = train.iloc[:r]
        past = past[past["user_id"] == u[r]]
        expected = user_history(past, 10)["recent_items"].iloc[0] if len(past) else np.zeros(0, np.int64)
        got = recent[r][recent[r] != PAD]
        assert np.array_equal(got, expected)
        assert n_before[r] == len(past)


def test_split_rows_holds_out_last_and_ranking_rows() -> None:
    train = _train()
    fit, rank, val = split_rows(train, rank_holdout=2)
    assert len(np.intersect1d(fit, rank)) == 0 and len(np.intersect1d(fit, val)) == 0
    assert len(fit) + len(rank) + len(val) == len(train)
    last = train.groupby("user_id").tail(1)
    multi = train.groupby("user_id")["item_id"].transform("size") >= 2
    assert set(val) == set(last.index[multi[last.index]])
    assert set(train.loc[fit, "user_id"]) == set(train["user_id"])  # every user keeps retrieval rows


def test_rank_fraction_caps_the_ranking_window() -> None:
    train = _train()
    _, rank, val = split_rows(train, rank_holdout=10, rank_fraction=0.1)
    sizes = train.groupby("user_id")["item_id"].size()
    per_user = train.loc[rank].groupby("user_id").size()
    for user, n in per_user.items():
        assert n <= min(10, int(np.ceil(0.1 * sizes[user]))) and n <= sizes[user] - 2
    assert len(np.intersect1d(rank, val)) == 0
