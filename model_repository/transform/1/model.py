"""transform: the fitted preprocessing workflow on the candidates, joined with the user (see config.pbtxt)."""

import numpy as np

from cascade.online.stages import TransformStage, load_workflow
from cascade.online.triton import StageContext, StageModel

RAW = ("item_int", "item_float", "item_str", "item_list", "item_list_widths")


class TritonPythonModel(StageModel):
    stage_name = "transform"

    def build(self, context: StageContext) -> None:
        self.stage = TransformStage(load_workflow(context.export_path("workflow")))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cat, cont, lists = self.stage.transform(
            inputs["user_cat"], inputs["user_cont"], inputs["user_lists"], {k: inputs[k] for k in RAW}
        )
        return {"rank_cat": cat, "rank_cont": cont, "rank_lists": lists}
