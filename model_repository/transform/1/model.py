"""transform: the fitted preprocessing workflow on the candidates (item entity; see config.pbtxt)."""

import numpy as np

from cascade.online.stages import TransformStage, load_workflow
from cascade.online.triton import StageContext, StageModel

RAW = ("item_int", "item_float", "item_str", "item_list", "item_list_widths")


class TritonPythonModel(StageModel):
    stage_name = "transform"

    def build(self, context: StageContext) -> None:
        self.stage = TransformStage(load_workflow(context.export_path("workflow")), context.export_path("feature_repo"))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cat, cont, lists = self.stage.transform(  # inputs [1, ...]: one request of a batch
            {k: inputs[k][0] for k in RAW}, inputs["snapshot_version"].reshape(-1)[0].decode()
        )
        return {"rank_cat": cat[np.newaxis], "rank_cont": cont[np.newaxis], "rank_lists": lists[np.newaxis]}
