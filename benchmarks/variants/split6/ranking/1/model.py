"""A/B split6: DLRM only (see benchmarks/variants/README.md)."""

import numpy as np

from cascade.online.stages import RankingStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "ranking"

    def build(self, context: StageContext) -> None:
        self.stage = RankingStage(context.export_path("onnx"), load_workflow(context.export_path("workflow")))

    def run(self, inputs):
        return self.run_batch([inputs])[0]

    def run_batch(self, batch):
        scores = self.stage.score_many([(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch],
                                       [(i["rank_cat"][0], i["rank_cont"][0], i["rank_lists"][0]) for i in batch])
        return [{"ranking_scores": s[np.newaxis]} for s in scores]
