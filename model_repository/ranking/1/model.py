"""ranking: DLRM on ONNX Runtime, CUDA execution provider on KIND_GPU instances (see config.pbtxt)."""

import numpy as np

from cascade.online.stages import RankingStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "ranking"

    def build(self, context: StageContext) -> None:
        self.stage = RankingStage(
            context.export_path("onnx"),
            load_workflow(context.export_path("workflow")),
            intra_op_threads=int(context.parameter("intra_op_threads", "1")),
            device=context.device,
            device_id=context.device_id,
        )
        self.logger.log_info(f"ranking: providers {self.stage.model.providers}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"ranking_scores": self.stage.score(
            inputs["user_cat"], inputs["user_cont"], inputs["user_lists"],
            inputs["rank_cat"], inputs["rank_cont"], inputs["rank_lists"],
        )}
