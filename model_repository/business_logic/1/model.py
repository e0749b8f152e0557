"""business_logic: filters, category caps, boosts, seeded exploration, top-k (rules in
business_rules.yaml beside this file; see config.pbtxt)."""

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates
from cascade.errors import InvalidInputError
from cascade.experiments.assign import CONTROL
from cascade.online.stages import BusinessLogicStage
from cascade.online.triton import StageContext, StageModel

EMPTY = np.empty(0, dtype=np.int64)
CONTROL_VARIANT = np.array([[CONTROL.encode()]], dtype=object)


class TritonPythonModel(StageModel):
    stage_name = "business_logic"

    def build(self, context: StageContext) -> None:
        manifest = context.export_layout.manifest()
        self.stage = BusinessLogicStage(BusinessRules.load(context.model_path("rules")), manifest.version)
        self.filtered = self.counter(
            "cascade_candidates_filtered_total", "Candidates dropped as seen, excluded or unavailable"
        )
        self.clock = self.phases("business_logic")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.clock.start()
        if "explore" not in inputs:
            raise InvalidInputError("input 'explore' is required: FP32 of shape [1] (0 = deterministic ranking)")
        snapshot = inputs["snapshot_version"].reshape(-1)[0].decode()
        seed = inputs.get("seed")
        selection = self.stage.apply(
            Candidates(
                item_ids=inputs["candidate_item_ids"].reshape(-1),
                scores=inputs["ranking_scores"].reshape(-1),
                categories=self.stage.categories(inputs["item_category"]),
                available=inputs["item_available"].reshape(-1),
            ),
            top_k=int(inputs["top_k"].reshape(-1)[0]),
            seen=inputs["seen_items"].reshape(-1),
            exclude=inputs.get("exclude_item_ids", EMPTY).reshape(-1),
            explore=float(inputs["explore"].reshape(-1)[0]),
            seed=None if seed is None else int(seed.reshape(-1)[0]),
        )
        self.filtered.increment(selection.n_filtered)
        self.clock.lap("business_logic")
        return {  # [1, ...]: one request of a batch (the ensemble's outputs drop that dim)
            "item_ids": selection.item_ids.reshape(1, -1),
            "scores": selection.scores.reshape(1, -1),
            "model_version": np.array([[self.stage.model_version(snapshot).encode()]], dtype=object),
            "degraded": inputs["cold_start"].reshape(1, 1).astype(bool),
            "seed_used": np.array([[selection.seed]], dtype=np.int64),
            "variant": CONTROL_VARIANT,  # the plain ensemble: no experiment, everyone is the control
        }
