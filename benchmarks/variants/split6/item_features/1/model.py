"""A/B split6: gather the candidates' encoded rows (see benchmarks/variants/README.md)."""

import numpy as np

from cascade.online.stages import ItemFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "item_features"

    def build(self, context: StageContext) -> None:
        self.stage = ItemFeatureStage(context.export_path("feature_repo"), context.export_path("index"),
                                      load_workflow(context.export_path("workflow")), refresh_seconds=30)

    def run(self, inputs):
        f = self.stage.gather(inputs["candidate_rows"])
        return {"rank_cat": f.cat[np.newaxis], "rank_cont": f.cont[np.newaxis], "rank_lists": f.lists[np.newaxis],
                "candidate_item_ids": f.item_ids[np.newaxis], "item_category": f.category_keys[np.newaxis],
                "item_available": f.available[np.newaxis],
                "snapshot_version": np.array([[f.snapshot_version.encode()]], dtype=object)}

    def finalize(self):
        self.stage.close()
        super().finalize()
