"""Evaluation of the retrieval stage's candidate sources, one by one and merged, through the served
stage classes (:class:`cascade.online.pipeline.InProcessRecommender` loaded from an export).

:class:`SourceRecommender` answers with the retrieval stage's candidate list (merge order, before
ranking and business rules) for one :class:`~cascade.online.candidates.SourceMix`: "ann" (the
two-tower ANN alone), "item2item" (neighbours of the recent items alone), "popular" (popular
items alone) or "merged" (the export's own mix). Its recall@N at N = the export's ``n_candidates``
is the candidate recall of that source: the best any ranker could do with those candidates.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from cascade.errors import InvalidInputError
from cascade.online.candidates import CandidateSources, SourceMix

if TYPE_CHECKING:  # pragma: no cover
    from cascade.online.pipeline import InProcessRecommender

SOURCE_MIXES: dict[str, SourceMix | None] = {
    "ann": SourceMix(item2item=0.0, popular=0.0),
    "item2item": SourceMix(item2item=1.0, popular=0.0),
    "popular": SourceMix(item2item=0.0, popular=1.0, short_history=1 << 30),
    "merged": None,  # the export's mix (artifacts/candidates/meta.json)
}
CHUNK = 256


class SourceRecommender:
    """BatchRecommender: the retrieval stage's candidates for one source mix, best first."""

    def __init__(self, recommender: "InProcessRecommender", source: str, name: str | None = None) -> None:
        if source not in SOURCE_MIXES:
            raise InvalidInputError(f"source must be one of {', '.join(SOURCE_MIXES)}; got {source!r}")
        self.recommender = recommender
        self.source = source
        self.name = name or f"candidates-{source}"
        base = recommender.retrieval
        self.stage = copy.copy(base)  # shares the index and neighbours; only the mix differs
        mix = SOURCE_MIXES[source]
        if mix is not None:
            self.stage.sources = CandidateSources(base.sources.n_candidates, base.sources.popular_rows,
                                                  base.sources.neighbours, mix)

    @property
    def n_candidates(self) -> int:
        return self.stage.sources.n_candidates

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        if len(exclude) != len(ids):
            raise InvalidInputError(f"exclude has {len(exclude)} entries for {len(ids)} user_ids")
        out = np.full((len(ids), k), -1, dtype=np.int64)
        rec = self.recommender
        for lo in range(0, len(ids), CHUNK):
            users = rec.user.lookup_many(ids[lo:lo + CHUNK].tolist())
            queries = rec.query.query_many([(u.cat, u.cont, u.lists) for u in users])
            for i, (user, query) in enumerate(zip(users, queries)):
                merged = self.stage.retrieve_sources(query, user.cold_start, user.seen_items,
                                                     np.asarray(exclude[lo + i], np.int64), user.recent_items)
                rows = merged.rows[:k]
                out[lo + i, :len(rows)] = self.stage.item_ids[rows]
        return out

    def details(self) -> dict[str, object]:
        mix = self.stage.sources.mix
        return {"stage": "retrieval", "source": self.source, "mix": mix.to_dict(),
                "n_candidates": self.n_candidates,
                "item2item": (self.stage.sources.neighbours.meta.get("method")
                              if self.stage.sources.neighbours is not None else None)}


def candidate_recall(recommender: "InProcessRecommender", users: np.ndarray, seen: list[np.ndarray],
                     relevant: list[np.ndarray], sources: tuple[str, ...] = tuple(SOURCE_MIXES)) -> dict[str, float]:
    """recall@n_candidates of each source's candidate list (mean over users)."""
    from cascade.metrics import ranking_metrics

    out: dict[str, float] = {}
    for source in sources:
        method = SourceRecommender(recommender, source)
        n = method.n_candidates
        recs = method.recommend(users, n, seen)
        out[source] = float(ranking_metrics(recs, relevant, (n,))[f"recall@{n}"])
    return out
