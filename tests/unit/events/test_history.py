"""The online history update equals recomputing the offline definition from all events."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cascade.events.history import History, merge_history
from cascade.features.history import user_history


def _offline(items: list[int], length: int) -> History:
    frame = pd.DataFrame({"user_id": 1, "item_id": items, "timestamp": np.arange(len(items))})
    row = user_history(frame, length).iloc[0]
    return History(row["recent_items"], row["seen_items"], int(row["n_interactions"]))


def test_merge_equals_recompute_on_random_streams() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        length = int(rng.integers(1, 8))
        old = rng.integers(0, 12, size=int(rng.integers(0, 20))).tolist()
        new = rng.integers(0, 12, size=int(rng.integers(1, 10))).tolist()
        current = _offline(old, length) if old else History(np.empty(0, np.int64), np.empty(0, np.int64), 0)
        # events arrive shuffled; their timestamps give the order (all newer than the old ones)
        order = rng.permutation(len(new))
        merged = merge_history(current, np.array(new)[order], 100 + order, length)
        expected = _offline(old + new, length)
        np.testing.assert_array_equal(merged.recent_items, expected.recent_items)
        np.testing.assert_array_equal(merged.seen_items, expected.seen_items)
        assert merged.n_interactions == expected.n_interactions
