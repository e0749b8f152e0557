"""ranking: DLRM on ONNX Runtime, CUDA execution provider on KIND_GPU instances (see config.pbtxt)."""

import numpy as np

from cascade.online.stages import RankingStage, candidate_extras, load_workflow
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
        return self.run_batch([inputs])[0]

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """user_* [1, ...] and rank_* [1, N, ...] per request -> ranking_scores [1, N]; the whole
        batch is one ONNX Runtime call (each candidate row points at its request's user row)."""
        scores = self.stage.score_many(
            [(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch],
            [(i["rank_cat"][0], i["rank_cont"][0], i["rank_lists"][0]) for i in batch],
            [candidate_extras(i) for i in batch],
        )
        return [{"ranking_scores": s[np.newaxis]} for s in scores]
