"""Validation of the ``recommend`` request (the wire contract in README), done once at the entry
model (``candidates``) so a bad request fails before any lookup: every input, including the
``explore`` temperature and the ``seed`` that only the last stage uses. Each error names the input
and the expected form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cascade.errors import InvalidInputError

MAX_TOP_K = 1000
NO_SEED = -1  # ``seed`` = -1 (what ``seed_used`` holds for explore = 0) or absent: draw a fresh seed


@dataclass(frozen=True)
class RecommendRequest:
    user_id: int
    top_k: int
    exclude_item_ids: np.ndarray  # int64, may be empty
    explore: float = 0.0  # softmax-sampling temperature, 0 = deterministic
    seed: int | None = None  # None: a fresh seed when explore > 0


def _scalar(inputs: dict[str, np.ndarray], name: str, kind: str, dtype: str) -> np.ndarray:
    if name not in inputs:
        raise InvalidInputError(f"input '{name}' is required: {dtype} of shape [1]")
    value = np.asarray(inputs[name])
    if value.size != 1:
        raise InvalidInputError(f"input '{name}' must hold exactly one {dtype} value (shape [1]), got shape {list(value.shape)}")
    if value.dtype.kind != kind:
        raise InvalidInputError(f"input '{name}' must be {dtype}, got {value.dtype}")
    return value.reshape(-1)


def parse_request(inputs: dict[str, np.ndarray], max_top_k: int, max_explore: float) -> RecommendRequest:
    """``max_top_k`` = min(MAX_TOP_K, the retrieval candidate count); ``max_explore`` = the business
    rules' ``max_explore_temperature``."""
    user_id = int(_scalar(inputs, "user_id", "i", "INT64")[0])
    if user_id < 0:
        raise InvalidInputError(f"input 'user_id' must be a non-negative INT64 raw user id, got {user_id}")
    top_k = int(_scalar(inputs, "top_k", "i", "INT32")[0])
    if not 1 <= top_k <= max_top_k:
        raise InvalidInputError(
            f"input 'top_k' must be an INT32 in [1, {max_top_k}] (the limit is min({MAX_TOP_K}, the retrieval "
            f"candidate count)), got {top_k}"
        )
    exclude = np.asarray(inputs.get("exclude_item_ids", np.empty(0, dtype=np.int64)))
    if exclude.dtype.kind != "i":
        raise InvalidInputError(f"input 'exclude_item_ids' must be INT64, got {exclude.dtype}")
    exclude = exclude.reshape(-1).astype(np.int64, copy=False)
    if (exclude < 0).any():
        bad = int(exclude[exclude < 0][0])
        raise InvalidInputError(f"input 'exclude_item_ids' must hold non-negative INT64 raw item ids, got {bad}")
    explore = float(_scalar(inputs, "explore", "f", "FP32")[0]) if "explore" in inputs else None
    if explore is None:
        raise InvalidInputError(
            f"input 'explore' is required: FP32 of shape [1], a temperature in [0, {max_explore}] "
            "(0 = deterministic ranking)"
        )
    if not math.isfinite(explore) or not 0.0 <= explore <= max_explore:
        raise InvalidInputError(
            f"input 'explore' must be a finite FP32 temperature in [0, {max_explore}] (0 = deterministic "
            f"ranking), got {explore!r}"
        )
    seed: int | None = None
    if "seed" in inputs:
        seed = int(_scalar(inputs, "seed", "i", "INT64")[0])
        if seed < NO_SEED:
            raise InvalidInputError(
                f"input 'seed' must be a non-negative INT64 (a seed_used to replay) or -1 (draw a fresh "
                f"seed), got {seed}"
            )
        seed = None if seed == NO_SEED else seed
    return RecommendRequest(user_id=user_id, top_k=top_k, exclude_item_ids=exclude, explore=explore, seed=seed)
