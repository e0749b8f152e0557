"""query_tower: two-tower user tower on ONNX Runtime (see config.pbtxt)."""

import numpy as np

from cascade.online.stages import QueryTowerStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "query_tower"

    def build(self, context: StageContext) -> None:
        self.stage = QueryTowerStage(
            context.export_path("onnx"),
            load_workflow(context.export_path("workflow")),
            intra_op_threads=int(context.parameter("intra_op_threads", "1")),
            device=context.device,
            device_id=context.device_id,
        )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"query": self.stage.query(inputs["user_cat"], inputs["user_cont"], inputs["user_lists"])}

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        queries = self.stage.query_many([(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch])
        return [{"query": q} for q in queries]
