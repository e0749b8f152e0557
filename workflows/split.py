"""Temporal train/test splits, shared by the synthetic generator and the importers.

``per-user`` (default): each user's interactions are ordered by timestamp, ties broken by input
order (a stable sort). The last ``ceil(f x n)`` of them (at least one when ``f > 0``) are test, the
rest train; ``f = 0`` keeps everything in train. A user with a single interaction therefore goes
to test entirely when ``f > 0``.

``global-time``: one cut time T for everyone. All interactions are ordered by (timestamp, input
order); T is the timestamp of the first of the last ``ceil(f x n)`` of them, and every interaction
at or after T is test (so ties at T all go to test and the test share can exceed f). Users whose
first interaction is at or after T have no train history (cold users in evaluation); users whose
last interaction is before T have no test rows. Nothing after T is visible to training.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from cascade.errors import DataValidationError, InvalidInputError

SplitMode = Literal["per-user", "global-time"]
SPLIT_MODES: tuple[str, ...] = ("per-user", "global-time")


def validate_split(split: str) -> SplitMode:
    if split not in SPLIT_MODES:
        raise InvalidInputError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    return split  # type: ignore[return-value]


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


def global_cut_time(timestamps: np.ndarray, test_fraction: float) -> int | None:
    """The global-time split's cut T (see the module docstring); None when f = 0 (all train)."""
    f = validate_test_fraction(test_fraction)
    ts = np.sort(np.asarray(timestamps, dtype=np.int64), kind="stable")
    if f == 0.0 or ts.size == 0:
        return None
    n_test = int(n_test_per_user(np.array([ts.size]), f)[0])
    cut = int(ts[ts.size - n_test])
    if cut <= int(ts[0]):
        raise DataValidationError(
            f"--split global-time: every interaction is at or after the cut time {cut} (too many share the "
            f"earliest timestamp), so train would be empty; use --split per-user or a smaller --test-fraction"
        )
    return cut


def split_interactions(
    frame: pd.DataFrame, test_fraction: float, split: str = "per-user"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sort ``frame`` (columns user_id, timestamp, ...) by (user, timestamp, input order) and split
    it into (train, test) with the ``split`` mode (the cut time: :func:`global_cut_time`).

    Row order of ``frame`` is the input order used to break timestamp ties.
    """
    validate_test_fraction(test_fraction)
    mode = validate_split(split)
    order = temporal_order(frame["user_id"].to_numpy(), frame["timestamp"].to_numpy())
    ordered = frame.iloc[order].reset_index(drop=True)
    if mode == "per-user":
        mask = is_test_sorted(ordered["user_id"].to_numpy(), test_fraction)
    else:
        cut = global_cut_time(ordered["timestamp"].to_numpy(), test_fraction)
        mask = np.zeros(len(ordered), dtype=bool) if cut is None else ordered["timestamp"].to_numpy() >= cut
    return ordered[~mask].reset_index(drop=True), ordered[mask].reset_index(drop=True)
