"""The online pipeline in one process, without Triton: the same stage objects the Triton models
(candidates, ranking, business_logic) run, chained in the ensemble's order. Used as the offline/online parity reference and as the
latency floor in benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates
from cascade.online.export_layout import ExportLayout
from cascade.online.request import MAX_TOP_K, parse_request
from cascade.online.stages import (
    BusinessLogicStage,
    ItemFeatureStage,
    QueryTowerStage,
    RankingStage,
    RetrievalStage,
    UserFeatureStage,
    load_workflow,
)

RULES_IN_EXPORT = Path("model_repository/business_logic/1/business_rules.yaml")


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
        rules = BusinessRules.load(layout.root / RULES_IN_EXPORT)
        self.retrieval = RetrievalStage(layout.index, manifest.n_candidates, drop_seen=rules.drop_seen)
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
        request = parse_request(
            {
                "user_id": np.array([user_id], dtype=np.int64),
                "top_k": np.array([top_k], dtype=np.int32),
                "exclude_item_ids": np.asarray(exclude, dtype=np.int64).reshape(-1),
            },
            self.max_top_k,
        )
        user = self.user.lookup(request.user_id)
        query = self.query.query(user.cat, user.cont, user.lists)
        rows = self.retrieval.retrieve(query, user.cold_start, user.seen_items, request.exclude_item_ids)
        features = self.items.gather(rows)
        scores = self.ranking.score(user.cat, user.cont, user.lists, features.cat, features.cont, features.lists)
        selection = self.business.apply(
            Candidates(features.item_ids, scores, self.business.categories(features.category_keys), features.available),
            top_k=request.top_k,
            seen=user.seen_items,
            exclude=request.exclude_item_ids,
            explore=explore,
            seed=seed,
        )
        return Recommendation(
            item_ids=selection.item_ids,
            scores=selection.scores,
            model_version=self.business.model_version(features.snapshot_version),
            degraded=user.cold_start,
            seed_used=selection.seed,
        )
