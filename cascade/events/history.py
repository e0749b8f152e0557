"""The online update of a user's derived features by new events: the same definition as the
offline :func:`cascade.features.history.user_history` (most recent first, repeats kept once, at
most ``history_length``; seen = distinct items ascending; count of interactions), applied to the
current features instead of the whole train history (tested equal to recomputing from scratch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class History:
    recent_items: np.ndarray  # int64, most recent first
    seen_items: np.ndarray  # int64, ascending, distinct
    n_interactions: int


def ordered_unique(items: np.ndarray) -> np.ndarray:
    """The first occurrence of each value, in order."""
    items = np.asarray(items, dtype=np.int64)
    if not len(items):
        return items
    _, first = np.unique(items, return_index=True)
    return items[np.sort(first)]


def merge_history(current: History, item_ids: np.ndarray, timestamps: np.ndarray, history_length: int) -> History:
    """``current`` plus events (``item_ids`` at ``timestamps``, any order; ties keep input order),
    which are taken to be newer than everything in ``current``."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if not len(item_ids):
        return current
    order = np.argsort(np.asarray(timestamps, dtype=np.int64), kind="stable")
    newest_first = item_ids[order][::-1]
    recent = ordered_unique(np.concatenate([newest_first, np.asarray(current.recent_items, np.int64)]))[:history_length]
    seen = np.union1d(np.asarray(current.seen_items, np.int64), item_ids)
    return History(recent, seen, int(current.n_interactions) + len(item_ids))
