"""The item-to-item candidate artifact (``artifacts/<key>/candidates/``), computed at training time.

For every catalog row: its top-``top_m`` neighbours (``neighbours.npy`` int32 [n_items, M], -1
padded) and their weights (``weights.npy`` float32), read by the retrieval stage
(:class:`cascade.online.candidates.ItemNeighbours`). The weights are

- EASE^R item weights ``B`` (:mod:`cascade.workflows.baselines`), lambda tuned on a validation
  split carved from the interactions by the same rule as the ALS/EASE baselines, for catalogs up
  to :data:`~cascade.workflows.baselines.EASE_MAX_ITEMS` items;
- above that (a dense items x items matrix would not fit), cosine co-occurrence
  ``C_ij / sqrt(n_i n_j)`` computed in row blocks of the sparse ``X^T X``, so memory stays
  bounded by ``block x n_items``.

Only positive weights are kept (a negative EASE weight never makes an item a candidate).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.errors import InvalidInputError
from cascade.online.candidates import ItemNeighbours

LOG = logging.getLogger(__name__)
CANDIDATES_DIR = "candidates"


@dataclass
class CandidatesConfig:
    top_m: int = 100                 # neighbours kept per item
    method: str = "auto"             # "auto" (EASE^R up to EASE_MAX_ITEMS items, else cosine), "ease", "cosine"
    item2item_share: float = 0.5     # share of the retrieval candidates from item-to-item neighbours
    tune_share: bool = True          # pick item2item_share in ITEM2ITEM_SHARES by validation candidate recall
    popular_share: float = 0.1       # share of popular items for users with short histories
    short_history: int = 5           # "short" = fewer recent items than this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_m < 1:
            raise InvalidInputError(f"candidates top_m must be >= 1; got {self.top_m}")
        if self.method not in ("auto", "ease", "cosine"):
            raise InvalidInputError(f"candidates method must be auto, ease or cosine; got {self.method!r}")

    def mix(self):
        from cascade.online.candidates import SourceMix

        return SourceMix(self.item2item_share, self.popular_share, self.short_history)


def top_m_rows(weights: np.ndarray, top_m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``top_m`` positive entries of a dense [n, n] matrix: (columns int32, weights)."""
    n = weights.shape[1]
    m = min(top_m, n)
    cols = np.full((weights.shape[0], top_m), -1, np.int32)
    vals = np.zeros((weights.shape[0], top_m), np.float32)
    for lo in range(0, weights.shape[0], 1024):
        block = np.asarray(weights[lo:lo + 1024], dtype=np.float32)
        part = np.argpartition(-block, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (len(block), 1))
        part_vals = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -part_vals), axis=1)
        part = np.take_along_axis(part, order, axis=1)
        part_vals = np.take_along_axis(part_vals, order, axis=1)
        positive = part_vals > 0
        cols[lo:lo + len(block), :m] = np.where(positive, part, -1)
        vals[lo:lo + len(block), :m] = np.where(positive, part_vals, 0.0)
    return cols, vals


def cosine_neighbours(user_rows: np.ndarray, item_rows: np.ndarray, n_items: int, top_m: int,
                      block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-M cosine co-occurrence neighbours per item, in row blocks of the sparse ``X^T X``."""
    import scipy.sparse as sp

    users, urows = np.unique(user_rows, return_inverse=True)
    x = sp.csr_matrix((np.ones(len(urows), np.float32), (urows, item_rows)), shape=(len(users), n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    counts = np.asarray(x.sum(axis=0)).ravel()
    norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    xt = x.T.tocsr()
    cols = np.full((n_items, top_m), -1, np.int32)
    vals = np.zeros((n_items, top_m), np.float32)
    for lo in range(0, n_items, block):
        hi = min(lo + block, n_items)
        co = (xt[lo:hi] @ x).tocsr()  # [b, n_items] sparse co-occurrence counts
        for r in range(hi - lo):
            start, end = co.indptr[r], co.indptr[r + 1]
            c = co.indices[start:end]
            w = co.data[start:end] * norm[lo + r] * norm[c]
            keep = c != lo + r
            c, w = c[keep], w[keep]
            if not len(c):
                continue
            order = np.lexsort((c, -w))[:top_m]
            cols[lo + r, : len(order)] = c[order]
            vals[lo + r, : len(order)] = w[order]
    return cols, vals


def build_item_neighbours(
    item_ids: np.ndarray, interactions: pd.DataFrame, config: CandidatesConfig | None = None, progress: bool = False,
) -> ItemNeighbours:
    """Neighbours of every catalog row (``item_ids`` = catalog order) from ``interactions``
    (user_id, item_id, timestamp[, weight]; the part of train the towers are fitted on)."""
    from cascade.workflows.baselines import EASE_MAX_ITEMS, Catalog, EASERecommender

    config = config or CandidatesConfig()
    started = time.perf_counter()
    catalog = Catalog(item_ids)
    n_items = len(catalog)
    method = config.method
    if method == "auto":
        method = "ease" if n_items <= EASE_MAX_ITEMS else "cosine"
    meta: dict[str, object] = {"format_version": 1, "method": method, "top_m": config.top_m, "n_items": n_items,
                               "n_interactions": len(interactions), "mix": config.mix().to_dict()}
    if method == "ease":
        model = EASERecommender.tune(catalog, interactions, seed=config.seed, progress=progress)
        cols, vals = top_m_rows(model.weights, config.top_m)
        meta["lambda"] = model.lam
        meta["tuning"] = model.tuning.as_dict() if model.tuning else None
        del model
    else:
        cols, vals = cosine_neighbours(
            interactions["user_id"].to_numpy(np.int64), catalog.index_of(interactions["item_id"].to_numpy(np.int64)),
            n_items, config.top_m,
        )
    meta["seconds"] = round(time.perf_counter() - started, 2)
    meta["config"] = asdict(config)
    LOG.info("item neighbours: %s, %d items, top %d, %.1f s", method, n_items, config.top_m, meta["seconds"])
    return ItemNeighbours(cols, vals, meta)


def write_candidates(out_dir: Path, neighbours: ItemNeighbours) -> Path:
    folder = Path(out_dir)
    neighbours.save(folder)
    return folder


# --------------------------------------------------------------------------- offline candidate lists


@dataclass
class CandidateLists:
    """Merged candidates of Q queries, built by the same :class:`CandidateSources` as serving:
    ``rows`` int64 [Q, C] catalog rows (-1 padded), ``source`` bitmask and ``score`` (item-to-item)."""

    rows: np.ndarray
    source: np.ndarray
    score: np.ndarray

    def lookup(self, queries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source, score) of (query, row) pairs; 0 for a row not in that query's list."""
        n_q, width = self.rows.shape
        stride = int(max(self.rows.max(initial=0), np.max(rows, initial=0))) + 2
        keys = np.arange(n_q, dtype=np.int64)[:, None] * stride + (self.rows + 1)
        flat = keys.reshape(-1)
        order = np.argsort(flat, kind="stable")
        sorted_keys = flat[order]
        wanted = np.asarray(queries, np.int64) * stride + (np.asarray(rows, np.int64) + 1)
        pos = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
        hit = (sorted_keys[pos] == wanted) & (np.asarray(rows) >= 0)
        src = np.where(hit, self.source.reshape(-1)[order[pos]], 0)
        score = np.where(hit, self.score.reshape(-1)[order[pos]], 0.0).astype(np.float32)
        return src.astype(np.int64), score

    def torch_features(self, queries: np.ndarray, rows: np.ndarray) -> dict:
        import torch

        from cascade.models.dlrm import CANDIDATE_SCORE, CANDIDATE_SOURCE

        source, score = self.lookup(queries, rows)
        return {CANDIDATE_SOURCE: torch.from_numpy(source), CANDIDATE_SCORE: torch.from_numpy(score)}


def merged_candidate_lists(
    ann: np.ndarray, recent_rows: np.ndarray, popularity: np.ndarray, neighbours: ItemNeighbours | None,
    mix, n_candidates: int,
) -> CandidateLists:
    """``ann`` [Q, >= C] exact ANN rows (history already excluded, -1 padded); ``recent_rows`` [Q, L]
    catalog rows of each query's earlier items, most recent first (-1 padded), also dropped."""
    from cascade.online.candidates import CandidateSources

    popular = np.argsort(-np.asarray(popularity, np.float32), kind="stable").astype(np.int64)
    sources = CandidateSources(n_candidates, popular, neighbours, mix)
    n_q = len(ann)
    rows = np.full((n_q, n_candidates), -1, np.int64)
    source = np.zeros((n_q, n_candidates), np.int64)
    score = np.zeros((n_q, n_candidates), np.float32)
    for i in range(n_q):
        recent = recent_rows[i]
        merged = sources.merge(ann[i], recent, drop=recent[recent >= 0])
        m = len(merged.rows)
        rows[i, :m], source[i, :m], score[i, :m] = merged.rows, merged.source, merged.item2item_score
    return CandidateLists(rows, source, score)


def interactions_of(user_ids: np.ndarray, item_rows: np.ndarray, timestamps: np.ndarray,
                    item_ids: np.ndarray) -> pd.DataFrame:
    """A (user_id, item_id, timestamp) frame from training examples (catalog rows -> raw ids)."""
    return pd.DataFrame({"user_id": np.asarray(user_ids, np.int64), "item_id": np.asarray(item_ids)[item_rows],
                         "timestamp": np.asarray(timestamps, np.int64)})


ITEM2ITEM_SHARES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)


def tune_item2item_share(
    ann: np.ndarray, recent_rows: np.ndarray, positives: np.ndarray, popularity: np.ndarray,
    neighbours: ItemNeighbours | None, mix, n_candidates: int, shares: tuple[float, ...] = ITEM2ITEM_SHARES,
) -> tuple[object, list[dict[str, float]]]:
    """The item-to-item share with the best candidate recall on validation queries carved from
    train (``positives`` [Q] catalog rows; ``ann``/``recent_rows`` as in :func:`merged_candidate_lists`).
    Ties go to the earlier share. Returns (the mix with that share, the per-share recalls)."""
    from dataclasses import replace

    if neighbours is None or not len(positives):
        return mix, []
    table = []
    best, best_recall = mix, -1.0
    for share in shares:
        candidate = replace(mix, item2item=float(share), popular=min(mix.popular, 1.0 - float(share)))
        lists = merged_candidate_lists(ann, recent_rows, popularity, neighbours, candidate, n_candidates)
        recall = float((lists.rows == np.asarray(positives)[:, None]).any(axis=1).mean())
        table.append({"item2item_share": float(share), f"val_candidate_recall@{n_candidates}": round(recall, 4)})
        if recall > best_recall:
            best, best_recall = candidate, recall
    return best, table
