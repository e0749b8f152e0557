"""Multi-source candidate retrieval: one definition, used by the retrieval stage online and by the
ranker's training data offline.

Sources (bit of the ``candidate_source`` bitmask each candidate carries to the ranker):

- ``ANN`` (bit 0): the two-tower ANN search, best first (computed by the caller: FAISS online,
  exact top-k offline).
- ``ITEM2ITEM`` (bit 1): item-to-item neighbours of the user's recent items. The artifact
  (``artifacts/<key>/candidates/``, :mod:`cascade.workflows.candidates`) holds the top-M
  neighbours of every catalog row with their weights (EASE^R item weights, or cosine
  co-occurrence on large catalogs); a candidate's item-to-item score is the sum of its weights
  from the user's recent items (EASE's ``x_u B`` restricted to the stored neighbours).
- ``POPULAR`` (bit 2): the most popular items, for users with fewer than ``short_history``
  recent items (and for cold-start users, who get nothing else).

Merge: each source gets a quota of the ``n_candidates`` slots (:class:`SourceMix`); the sources'
lists are interleaved in proportion to their quotas (entry r of a source with quota q gets the key
r / q, ties by source order), deduplicated (first occurrence wins) and cut at ``n_candidates``, so
a source with fewer items than its quota leaves its slots to the others. A candidate's bitmask
has the bit of every source whose list (up to ``n_candidates`` long) contains it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cascade.errors import InvalidInputError, NotFoundError

ANN, ITEM2ITEM, POPULAR = 1, 2, 4
SOURCE_NAMES = {ANN: "ann", ITEM2ITEM: "item2item", POPULAR: "popular"}
N_SOURCE_CODES = 8  # bitmask values 0..7 (the ranker's embedding table size)
NEIGHBOURS_FILE = "neighbours.npy"
WEIGHTS_FILE = "weights.npy"
META_FILE = "meta.json"


@dataclass(frozen=True)
class SourceMix:
    """Shares of the candidate slots. ``item2item`` of all users' slots; ``popular`` only for users
    with fewer than ``short_history`` recent items; the ANN gets the rest."""

    item2item: float = 0.5
    popular: float = 0.1
    short_history: int = 5

    def __post_init__(self) -> None:
        for name in ("item2item", "popular"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"candidate share {name} must be in [0, 1]; got {value}")
        if self.item2item + self.popular > 1.0:
            raise InvalidInputError(
                f"candidate shares item2item + popular must be <= 1; got {self.item2item} + {self.popular}"
            )
        if self.short_history < 0:
            raise InvalidInputError(f"short_history must be >= 0; got {self.short_history}")

    def quotas(self, n_candidates: int, n_recent: int, has_item2item: bool) -> tuple[int, int, int]:
        """(ANN, item2item, popular) slots for a user with ``n_recent`` recent items."""
        i2i = int(round(self.item2item * n_candidates)) if has_item2item and n_recent > 0 else 0
        pop = int(round(self.popular * n_candidates)) if n_recent < self.short_history else 0
        return max(n_candidates - i2i - pop, 0), i2i, pop

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ItemNeighbours:
    """Top-M neighbours per catalog row: ``rows`` int32 [n_items, M] (-1 padded), ``weights`` float32."""

    rows: np.ndarray
    weights: np.ndarray
    meta: dict

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape != self.weights.shape:
            raise InvalidInputError(
                f"item neighbours: rows {self.rows.shape} and weights {self.weights.shape} must both be [n_items, M]"
            )

    @property
    def n_items(self) -> int:
        return int(self.rows.shape[0])

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / NEIGHBOURS_FILE, self.rows.astype(np.int32))
        np.save(folder / WEIGHTS_FILE, self.weights.astype(np.float32))
        (folder / META_FILE).write_text(json.dumps(self.meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> "ItemNeighbours":
        folder = Path(folder)
        if not (folder / NEIGHBOURS_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise NotFoundError(
                f"{folder} holds no item-to-item candidates ({NEIGHBOURS_FILE}, {WEIGHTS_FILE}); run `cascade train`"
            )
        meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).is_file() else {}
        return cls(np.load(folder / NEIGHBOURS_FILE), np.load(folder / WEIGHTS_FILE), meta)

    def scores(self, recent_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(catalog rows ascending, summed weights) of every neighbour of ``recent_rows`` (-1 ignored)."""
        recent = np.asarray(recent_rows, dtype=np.int64).reshape(-1)
        recent = recent[(recent >= 0) & (recent < self.n_items)]
        if not len(recent):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = self.rows[recent].reshape(-1)
        weights = self.weights[recent].reshape(-1)
        keep = rows >= 0
        rows, weights = rows[keep], weights[keep]
        uniq, inverse = np.unique(rows, return_inverse=True)
        sums = np.bincount(inverse, weights=weights, minlength=len(uniq)).astype(np.float32)
        return uniq.astype(np.int64), sums


def not_in(values: np.ndarray, sorted_drop: np.ndarray) -> np.ndarray:
    """Mask of ``values`` absent from ``sorted_drop`` (ascending): ``~np.isin`` without sorting
    ``values`` (one binary search each; ``np.isin`` sorts both arrays on every call)."""
    if not len(sorted_drop):
        return np.ones(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_drop, values), len(sorted_drop) - 1)
    return sorted_drop[pos] != values


def ranked(rows: np.ndarray, scores: np.ndarray, drop: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best ``rows`` by ``scores`` (ties -> lower row), ``drop`` rows (ascending) removed."""
    if len(drop):
        keep = not_in(rows, drop)
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order]


@dataclass(frozen=True)
class MergedCandidates:
    rows: np.ndarray  # int64 [N] catalog rows, merge order
    source: np.ndarray  # int64 [N] bitmask (ANN | ITEM2ITEM | POPULAR)
    item2item_score: np.ndarray  # float32 [N] summed neighbour weight from the recent items (0 = none)


def lookup_scores(rows: np.ndarray, score_rows: np.ndarray, score_values: np.ndarray) -> np.ndarray:
    """Score of each of ``rows`` in the (ascending ``score_rows``, ``score_values``) table; 0 if absent."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(score_rows) or not len(rows):
        return np.zeros(len(rows), np.float32)
    pos = np.minimum(np.searchsorted(score_rows, rows), len(score_rows) - 1)
    return np.where(score_rows[pos] == rows, score_values[pos], 0.0).astype(np.float32)


def merge_sources(lists: list[np.ndarray], quotas: list[int], n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Quota-proportional interleave of ranked ``lists`` (one per source, source s = bit 1 << s),
    deduplicated, cut at ``n_candidates``: (rows, bitmask of the lists each row is in)."""
    parts_rows, parts_key, parts_src = [], [], []
    for s, (rows, quota) in enumerate(zip(lists, quotas)):
        if quota <= 0 or not len(rows):
            continue
        rows = np.asarray(rows, dtype=np.int64)[:n_candidates]
        parts_rows.append(rows)
        parts_key.append(np.arange(len(rows), dtype=np.float64) / quota)
        parts_src.append(np.full(len(rows), s, np.int64))
    if not parts_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = np.concatenate(parts_rows)
    key = np.concatenate(parts_key)
    src = np.concatenate(parts_src)
    order = np.lexsort((src, key))
    rows, src = rows[order], src[order]
    uniq, first = np.unique(rows, return_index=True)
    bits = np.zeros(len(uniq), np.int64)
    np.bitwise_or.at(bits, np.searchsorted(uniq, rows), np.left_shift(1, src))
    chosen = np.sort(first)[:n_candidates]
    out = rows[chosen]
    return out, bits[np.searchsorted(uniq, out)]


class CandidateSources:
    """Merges the sources for one user. ``popular_rows``: catalog rows by popularity, best first."""

    def __init__(self, n_candidates: int, popular_rows: np.ndarray, neighbours: ItemNeighbours | None = None,
                 mix: SourceMix | None = None) -> None:
        if n_candidates < 1:
            raise InvalidInputError(f"n_candidates must be >= 1; got {n_candidates}")
        self.n_candidates = int(n_candidates)
        self.popular_rows = np.asarray(popular_rows, dtype=np.int64)
        self.neighbours = neighbours
        self.mix = mix or SourceMix()
        if neighbours is not None and neighbours.n_items > len(self.popular_rows):
            # fewer is fine: items added after training (index extension) have no neighbours yet
            raise InvalidInputError(
                f"item neighbours cover {neighbours.n_items} catalog rows but the index has only {len(self.popular_rows)}"
            )

    def ann_wanted(self, n_drop: int) -> int:
        """How many ANN results to ask for so that ``n_candidates`` survive ``n_drop`` removals."""
        return int(min(len(self.popular_rows), self.n_candidates + n_drop))

    def merge(self, ann_rows: np.ndarray, recent_rows: np.ndarray, drop: np.ndarray,
              cold_start: bool = False) -> MergedCandidates:
        """``ann_rows``: the ANN result best first (may still contain ``drop`` rows); ``recent_rows``:
        catalog rows of the user's recent items, most recent first (-1 = not in the catalog);
        ``drop``: rows never to return (seen/excluded)."""
        n = self.n_candidates
        drop = np.unique(np.asarray(drop, dtype=np.int64).reshape(-1))  # sorted once for every source
        if cold_start:
            popular = self._popular(drop)
            return MergedCandidates(popular, np.full(len(popular), POPULAR, np.int64), np.zeros(len(popular), np.float32))
        recent = np.asarray(recent_rows, dtype=np.int64).reshape(-1)
        recent = recent[recent >= 0]
        q_ann, q_i2i, pop_quota = self.mix.quotas(n, len(recent), self.neighbours is not None)
        ann = np.asarray(ann_rows, dtype=np.int64).reshape(-1)
        ann = ann[ann >= 0]
        if len(drop):
            ann = ann[not_in(ann, drop)]
        ann = ann[:n]
        # a source without slots is not built (its list would be skipped by the merge); the
        # item-to-item scores are, as they are the ranker's feature for every candidate
        score_rows, score_values = np.zeros(0, np.int64), np.zeros(0, np.float32)
        i2i = np.zeros(0, np.int64)
        if self.neighbours is not None and len(recent):
            score_rows, score_values = self.neighbours.scores(recent)
            if q_i2i > 0:
                i2i = ranked(score_rows, score_values, drop, n)
        popular = self._popular(drop) if pop_quota > 0 else np.zeros(0, np.int64)
        rows, bits = merge_sources([ann, i2i, popular], [q_ann, q_i2i, pop_quota], n)
        return MergedCandidates(rows, bits, lookup_scores(rows, score_rows, score_values))

    def _popular(self, drop: np.ndarray) -> np.ndarray:
        """The ``n_candidates`` most popular rows not in ``drop``."""
        popular = self.popular_rows[: self.n_candidates + len(drop)]
        if len(drop):
            popular = popular[not_in(popular, drop)]
        return popular[: self.n_candidates]
