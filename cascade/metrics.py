"""Top-K ranking metrics for offline evaluation, vectorised over users.

Inputs everywhere:

- ``recommended``: int64 array ``[n_users, L]`` of raw item ids, best first. Each row is a strict
  order (the recommender has already broken score ties, by item index). ``-1`` is padding and
  never counts as a hit. ``L`` may be smaller than ``K``: the missing positions are misses.
  A row must not repeat an item (InvalidInputError otherwise: a repeated hit would inflate every
  metric).
- ``relevant``: one array of raw item ids per user (duplicates are ignored). Relevance is binary:
  an item is relevant iff it is in the user's held-out set.

Definitions (``hit_j`` = 1 if the item at 0-based rank ``j < K`` is relevant, ``R`` = the user's
relevant set):

- ``precision@K = sum_j hit_j / K``  (always divided by K, also when fewer than K items came back)
- ``recall@K    = sum_j hit_j / |R|``  (the common definition; cannot reach 1 when |R| > K)
- ``hit_rate@K  = 1 if sum_j hit_j > 0 else 0``
- ``ndcg@K      = DCG / IDCG``, ``DCG = sum_j hit_j / log2(j + 2)``,
  ``IDCG = sum_{j < min(K, |R|)} 1 / log2(j + 2)``
- ``map@K``: mean over users of ``AP@K = sum_j hit_j * precision@(j+1) / min(K, |R|)``

Every metric is the unweighted mean over users with ``|R| > 0``; users with an empty relevant
set are excluded (not counted as zero). :func:`ranking_metrics` reports how many users counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cascade.errors import InvalidInputError

METRIC_NAMES: tuple[str, ...] = ("recall", "precision", "ndcg", "map", "hit_rate")

DEFINITIONS: dict[str, str] = {
    "relevance": "binary: an item is relevant iff it is in the user's held-out test set",
    "precision@K": "hits in the top K / K (divided by K even when fewer than K items are returned)",
    "recall@K": "hits in the top K / |relevant|",
    "hit_rate@K": "1 if at least one hit in the top K, else 0",
    "ndcg@K": "DCG / IDCG with DCG = sum over ranks j=1..K of hit_j / log2(j + 1); "
    "IDCG = the same sum over the first min(K, |relevant|) ranks",
    "map@K": "mean over users of AP@K = sum over ranks j=1..K of hit_j * precision@j / min(K, |relevant|)",
    "averaging": "unweighted mean over users with at least one relevant item; users with none are excluded",
    "ties": "recommendation lists are strict orders; recommenders break score ties by lower item index",
    "padding": "-1 entries (fewer items than K) are misses",
}


def _as_recommended(recommended: np.ndarray) -> np.ndarray:
    recs = np.asarray(recommended)
    if recs.ndim != 2:
        raise InvalidInputError(f"recommended must be a 2-D array [n_users, L]; got shape {recs.shape}")
    if recs.size and not np.issubdtype(recs.dtype, np.integer):
        raise InvalidInputError(f"recommended must hold integer item ids; got dtype {recs.dtype}")
    return recs.astype(np.int64, copy=False)


def hit_matrix(recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int | None = None) -> np.ndarray:
    """Boolean ``[n_users, K]``: True where the item at that rank is in the user's relevant set.

    ``K`` defaults to the width of ``recommended``; columns past that width are False (misses).
    """
    recs = _as_recommended(recommended)
    n_users, width = recs.shape
    if len(relevant) != n_users:
        raise InvalidInputError(
            f"relevant has {len(relevant)} entries but recommended has {n_users} rows; expected one per user"
        )
    k = width if k is None else int(k)
    if k < 1:
        raise InvalidInputError(f"k must be >= 1; got {k}")
    recs = recs[:, :k]
    _check_no_repeats(recs)
    hits = np.zeros((n_users, k), dtype=bool)
    if n_users == 0 or recs.shape[1] == 0:
        return hits
    lengths = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=n_users)
    rel_items = (
        np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in relevant]) if lengths.sum() else
        np.zeros(0, dtype=np.int64)
    )
    rel_rows = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    # Encode (row, item) pairs as one int64 key through a shared dense item vocabulary.
    vocab, inverse = np.unique(np.concatenate([rel_items, recs.ravel()]), return_inverse=True)
    size = np.int64(len(vocab))
    rel_keys = rel_rows * size + inverse[: len(rel_items)]
    rec_rows = np.repeat(np.arange(n_users, dtype=np.int64), recs.shape[1])
    rec_keys = rec_rows * size + inverse[len(rel_items):]
    found = np.isin(rec_keys, rel_keys).reshape(recs.shape)
    found &= recs >= 0  # -1 padding never hits (even if someone lists -1 as relevant)
    hits[:, : recs.shape[1]] = found
    return hits


def _check_no_repeats(recs: np.ndarray) -> None:
    if recs.shape[1] < 2:
        return
    ordered = np.sort(recs, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise InvalidInputError(
            f"recommended row {row} repeats an item id ({recs[row].tolist()[:20]}...); "
            "each list must be a strict order without duplicates (-1 padding excepted)"
        )


def relevant_counts(relevant: Sequence[np.ndarray]) -> np.ndarray:
    """Number of distinct relevant items per user."""
    return np.fromiter((len(np.unique(np.asarray(r))) for r in relevant), dtype=np.int64, count=len(relevant))


def _dedupe(relevant: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.unique(np.asarray(r, dtype=np.int64)) for r in relevant]


def per_user_metrics(
    recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int
) -> dict[str, np.ndarray]:
    """Each metric of the module docstring per user (float64 ``[n_users]``), plus ``mask``: True
    for users with a non-empty relevant set (the others hold NaN)."""
    rel = _dedupe(relevant)
    hits = hit_matrix(recommended, rel, k).astype(np.float64)
    n_rel = np.fromiter((len(r) for r in rel), dtype=np.int64, count=len(rel)).astype(np.float64)
    mask = n_rel > 0
    safe = np.where(mask, n_rel, 1.0)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    n_hits = hits.sum(axis=1)
    ideal_len = np.minimum(n_rel, k).astype(np.int64)
    idcg = np.concatenate(([0.0], np.cumsum(discounts)))[ideal_len]
    dcg = hits @ discounts
    precision_at_rank = np.cumsum(hits, axis=1) / ranks
    ap = (precision_at_rank * hits).sum(axis=1) / np.where(mask, np.minimum(n_rel, k), 1.0)
    out = {
        "recall": n_hits / safe,
        "precision": n_hits / k,
        "ndcg": np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0),
        "map": ap,
        "hit_rate": (n_hits > 0).astype(np.float64),
    }
    for name in out:
        out[name] = np.where(mask, out[name], np.nan)
    out["mask"] = mask
    return out


def ranking_metrics(
    recommended: np.ndarray, relevant: Sequence[np.ndarray], ks: Iterable[int] = (10, 100)
) -> dict[str, float]:
    """Mean of every metric at every K over users with relevant items.

    Returns keys like ``"recall@10"``, ``"ndcg@100"`` and ``"n_users"`` (users that counted).
    """
    result: dict[str, float] = {}
    n_users = 0
    for k in ks:
        per_user = per_user_metrics(recommended, relevant, int(k))
        mask = per_user["mask"]
        n_users = int(mask.sum())
        for name in METRIC_NAMES:
            result[f"{name}@{k}"] = float(per_user[name][mask].mean()) if n_users else float("nan")
    result["n_users"] = float(n_users)
    return result


def _mean_at_k(name: str, recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    per_user = per_user_metrics(recommended, relevant, k)
    mask = per_user["mask"]
    return float(per_user[name][mask].mean()) if mask.any() else float("nan")


def recall_at_k(recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean recall@K: hits in the top K / |relevant|."""
    return _mean_at_k("recall", recommended, relevant, k)


def precision_at_k(recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean precision@K: hits in the top K / K."""
    return _mean_at_k("precision", recommended, relevant, k)


def ndcg_at_k(recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean NDCG@K, binary gains, log2 discount, ideal DCG over min(K, |relevant|) ranks."""
    return _mean_at_k("ndcg", recommended, relevant, k)


def map_at_k(recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """MAP@K: mean over users of sum_j hit_j * precision@j / min(K, |relevant|)."""
    return _mean_at_k("map", recommended, relevant, k)


def hit_rate_at_k(recommended: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Share of users with at least one hit in the top K."""
    return _mean_at_k("hit_rate", recommended, relevant, k)
