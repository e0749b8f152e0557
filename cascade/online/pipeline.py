"""The online pipeline in one process, without Triton: the same stage objects the Triton models
(candidates, ranking with the business rules) run, chained in the ensemble's order. Used by offline
evaluation (``recommend_many``), as the offline/online parity reference and as the latency floor
in benchmarks.

``recommend_many`` is the batched form, computed the way the batching Triton stages compute a
batch (``StageModel.run_batch``): per chunk of users ONE Feast read and ONE workflow transform
(``UserFeatureStage.lookup_many``), ONE user-tower call (``QueryTowerStage.query_many``), the
retrieval search per user, ONE gather of the encoded item rows (items are encoded once per
snapshot) for all candidates of the chunk, ONE DLRM call (``RankingStage.score_many``), and the
business rules per user. Each user's answer equals ``recommend`` for that user (and what the
served ensemble returns for the same export) up to float32 ties (docs/EVALUATION.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import NO_SEED, Candidates
from cascade.errors import InvalidInputError
from cascade.online.export_layout import ExportLayout
from cascade.online.request import MAX_TOP_K, RecommendRequest, parse_request
from cascade.online.stages import (
    BusinessLogicStage,
    ItemFeatureStage,
    QueryTowerStage,
    RankingStage,
    RetrievalStage,
    UserFeatureStage,
    load_workflow,
)

RECOMMEND_CHUNK = 256  # users per batched pass of recommend_many
Stage = Literal["retrieval", "served"]


@dataclass(frozen=True)
class Recommendation:
    item_ids: np.ndarray
    scores: np.ndarray
    model_version: str
    degraded: bool
    seed_used: int


class InProcessRecommender:
    def __init__(self, layout: ExportLayout) -> None:
        manifest = layout.manifest()
        workflow = load_workflow(layout.workflow)
        self.layout = layout
        self.max_top_k = min(MAX_TOP_K, manifest.n_candidates)
        from cascade.features.guard import OFFLINE_GUARD

        self.user = UserFeatureStage(layout.feature_repo, workflow, guard=OFFLINE_GUARD)  # never degrade by time offline
        self.query = QueryTowerStage(layout.user_tower, workflow)
        rules = BusinessRules.load(layout.business_rules)
        self.retrieval = RetrievalStage(layout.index, manifest.n_candidates, drop_seen=rules.drop_seen,
                                        feature_repo=layout.feature_repo, refresh_seconds=0,
                                        candidates_dir=layout.candidates)
        # The item side is encoded once here (TransformStage inside ItemFeatureStage); no background
        # refresh in process: the snapshot published at load is the one used.
        self.items = ItemFeatureStage(layout.feature_repo, layout.index, workflow, refresh_seconds=0)
        self.ranking = RankingStage(layout.dlrm, workflow)
        self.business = BusinessLogicStage(rules, manifest.version)

    @classmethod
    def load(cls, path: Path) -> "InProcessRecommender":
        """``path``: an export root or its model_repository/."""
        return cls(ExportLayout.find(path))

    def recommend(self, user_id: int, top_k: int = 10, exclude: Sequence[int] = (), explore: float = 0.0,
                  seed: int | None = None) -> Recommendation:
        request = self._request(user_id, top_k, exclude, explore, seed)
        return self._answer([request], "served")[0]

    def recommend_many(
        self, user_ids: Sequence[int] | np.ndarray, top_k: int = 10, exclude: Sequence[Sequence[int]] | None = None,
        explore: float = 0.0, seed: int | None = None, *, stage: Stage = "served", chunk: int = RECOMMEND_CHUNK,
    ) -> list[Recommendation]:
        """One :class:`Recommendation` per user, in order, computed in batched chunks of ``chunk``
        users. ``exclude``: one sequence of raw item ids per user (None: nothing excluded).
        ``stage="retrieval"`` stops after retrieval: the candidates in ANN order (popular order for
        cold users), without ranking or business rules (scores are NaN), for candidate-recall
        metrics. Every request is validated first, as the entry stage does."""
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        if exclude is not None and len(exclude) != len(ids):
            raise InvalidInputError(f"exclude must hold one sequence per user ({len(ids)}), got {len(exclude)}")
        if stage not in ("retrieval", "served"):
            raise InvalidInputError(f"stage must be 'retrieval' or 'served', got {stage!r}")
        if chunk < 1:
            raise InvalidInputError(f"chunk must be >= 1, got {chunk}")
        requests = [self._request(int(u), top_k, () if exclude is None else exclude[i], explore, seed)
                    for i, u in enumerate(ids)]
        out: list[Recommendation] = []
        for lo in range(0, len(requests), chunk):
            out += self._answer(requests[lo:lo + chunk], stage)
        return out

    def _request(self, user_id: int, top_k: int, exclude: Sequence[int], explore: float,
                 seed: int | None) -> RecommendRequest:
        return parse_request(
            {
                "user_id": np.array([user_id], dtype=np.int64),
                "top_k": np.array([top_k], dtype=np.int32),
                "exclude_item_ids": np.asarray(exclude, dtype=np.int64).reshape(-1),
                "explore": np.array([explore], dtype=np.float32),
                **({} if seed is None else {"seed": np.array([seed], dtype=np.int64)}),
            },
            self.max_top_k,
            self.business.rules.max_explore_temperature,
        )

    def _answer(self, requests: list[RecommendRequest], stage: Stage) -> list[Recommendation]:
        users = self.user.lookup_many([r.user_id for r in requests])
        queries = self.query.query_many([(u.cat, u.cont, u.lists) for u in users])
        merged = [self.retrieval.retrieve_sources(q, u.cold_start, u.seen_items, r.exclude_item_ids, u.recent_items)
                  for q, u, r in zip(queries, users, requests)]
        rows = [m.rows for m in merged]
        if stage == "retrieval":
            item_ids = self.retrieval.item_ids
            version = self.business.model_version(self.items.snapshot_version)
            return [Recommendation(item_ids[r[:req.top_k]], np.full(min(len(r), req.top_k), np.nan, np.float32),
                                   version, u.cold_start, NO_SEED) for r, u, req in zip(rows, users, requests)]
        features = self.items.gather(np.concatenate(rows))  # one gather of encoded rows for the chunk
        cat, cont, lists = features.cat, features.cont, features.lists
        bounds = np.cumsum([0] + [len(r) for r in rows])
        scores = self.ranking.score_many(
            [(u.cat, u.cont, u.lists) for u in users],
            [(cat[a:b], cont[a:b], lists[a:b]) for a, b in _pairs(bounds)],
            [(m.source, m.item2item_score) for m in merged],
        )
        categories = self.business.categories(features.category_keys)
        version = self.business.model_version(features.snapshot_version)
        out = []
        for (a, b), user, request, user_scores in zip(_pairs(bounds), users, requests, scores):
            selection = self.business.apply(
                Candidates(features.item_ids[a:b], user_scores, categories[a:b], features.available[a:b]),
                top_k=request.top_k,
                seen=user.seen_items,
                exclude=request.exclude_item_ids,
                explore=request.explore,
                seed=request.seed,
            )
            out.append(Recommendation(
                item_ids=selection.item_ids,
                scores=selection.scores,
                model_version=version,
                degraded=user.cold_start,
                seed_used=selection.seed,
            ))
        return out


def _pairs(bounds: np.ndarray) -> Iterator[tuple[int, int]]:
    return zip(bounds[:-1].tolist(), bounds[1:].tolist())
