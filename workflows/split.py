"""Temporal train/test split, shared by the synthetic generator and the importers.

Each user's interactions are ordered by timestamp, ties broken by input order (a stable sort).
The last ``ceil(f x n)`` of them (at least one when ``f > 0``) are test, the rest train; ``f = 0``
keeps everything in train. A user with a single interaction therefore goes to test entirely
when ``f > 0``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cascade.errors import InvalidInputError


def validate_test_fraction(test_fraction: float) -> float:
    """Return ``test_fraction`` as a float; InvalidInputError naming --test-fraction if not in [0, 1)."""
    try:
        value = float(test_fraction)
    except (TypeError, ValueError):
        raise InvalidInputError(f"--test-fraction must be a number in [0, 1), got {test_fraction!r}") from None
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise InvalidInputError(f"--test-fraction must be in [0, 1) (0 keeps everything in train), got {value}")
    return value


def n_test_per_user(n_per_user: np.ndarray, test_fraction: float) -> np.ndarray:
    """Number of test interactions per user: ``ceil(f x n)``, at least 1 when f > 0, 0 when f = 0.

    ``f x n`` is rounded to 9 decimals before the ceiling so that float noise such as
    ``0.7 * 10 = 7.000000000000001`` does not add an interaction.
    """
    f = validate_test_fraction(test_fraction)
    n = np.asarray(n_per_user, dtype=np.int64)
    if f == 0.0:
        return np.zeros_like(n)
    counts = np.ceil(np.round(f * n.astype(np.float64), 9)).astype(np.int64)
    return np.minimum(np.maximum(counts, 1), n)


def temporal_order(user_ids: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Permutation sorting rows by (user_id, timestamp, input order)."""
    return np.lexsort((np.asarray(timestamps), np.asarray(user_ids)))


def is_test_sorted(user_ids_sorted: np.ndarray, test_fraction: float) -> np.ndarray:
    """Boolean test mask for interactions already sorted by (user, timestamp, input order)."""
    users = np.asarray(user_ids_sorted)
    if users.size == 0:
        return np.zeros(0, dtype=bool)
    boundaries = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [users.size]))
    sizes = ends - starts
    n_test = n_test_per_user(sizes, test_fraction)
    position = np.arange(users.size) - np.repeat(starts, sizes)
    return position >= np.repeat(sizes - n_test, sizes)


def split_interactions(frame: pd.DataFrame, test_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sort ``frame`` (columns user_id, timestamp, ...) temporally and split it into (train, test).

    Row order of ``frame`` is the input order used to break timestamp ties.
    """
    validate_test_fraction(test_fraction)
    order = temporal_order(frame["user_id"].to_numpy(), frame["timestamp"].to_numpy())
    ordered = frame.iloc[order].reset_index(drop=True)
    mask = is_test_sorted(ordered["user_id"].to_numpy(), test_fraction)
    return ordered[~mask].reset_index(drop=True), ordered[mask].reset_index(drop=True)
