"""The whole pipeline in one Python-backend model (A/B variant single1, benchmarks/variants/README.md):
``InProcessRecommender`` (the in-process floor) answering each request, one stub hop, no ensemble."""

from pathlib import Path

import numpy as np

from cascade.online.pipeline import InProcessRecommender
from cascade.online.request import parse_request
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "recommend"

    def build(self, context: StageContext) -> None:
        self.floor = InProcessRecommender.load(Path(context.parameter("export")))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        floor = self.floor
        request = parse_request(inputs, floor.max_top_k, floor.business.rules.max_explore_temperature)
        answer = floor._answer([request], "served")[0]
        return {"item_ids": answer.item_ids, "scores": answer.scores,
                "model_version": np.array([answer.model_version.encode()], dtype=object),
                "degraded": np.array([answer.degraded]), "seed_used": np.array([answer.seed_used], dtype=np.int64),
                "variant": np.array([b"control"], dtype=object)}
