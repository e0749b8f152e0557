"""Per-user features derived from the TRAIN interactions only (one definition, used offline and
online): the recent-history list the towers read, the seen set business rules filter, and the
interaction count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HISTORY_LENGTH = 50


def user_history(train: pd.DataFrame, history_length: int = HISTORY_LENGTH) -> pd.DataFrame:
    """One row per user with ``recent_items`` (most recent first, at most ``history_length`` raw ids,
    repeats of the same item kept once), ``seen_items`` (every distinct train item, ascending) and
    ``n_interactions``.

    ``train`` must be sorted by (user_id, timestamp, input order), as the canonical dataset is.
    """
    if train.empty:
        return pd.DataFrame(
            {"user_id": pd.Series([], dtype="int64"), "recent_items": [], "seen_items": [],
             "n_interactions": pd.Series([], dtype="int64")}
        )
    users = train["user_id"].to_numpy(np.int64)
    items = train["item_id"].to_numpy(np.int64)
    boundaries = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(users)]))
    recent: list[np.ndarray] = []
    seen: list[np.ndarray] = []
    for start, end in zip(starts, ends):
        block = items[start:end][::-1]  # most recent first
        _, first = np.unique(block, return_index=True)
        ordered = block[np.sort(first)]
        recent.append(ordered[:history_length])
        seen.append(np.sort(ordered))
    return pd.DataFrame(
        {
            "user_id": users[starts],
            "recent_items": recent,
            "seen_items": seen,
            "n_interactions": (ends - starts).astype(np.int64),
        }
    )


def load_user_history(train_path: Path, history_length: int = HISTORY_LENGTH) -> pd.DataFrame:
    train = pd.read_parquet(train_path, columns=["user_id", "item_id", "timestamp"])
    return user_history(train, history_length)
