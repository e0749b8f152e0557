"""A/B split6: FAISS retrieval (see benchmarks/variants/README.md)."""

import numpy as np

from cascade.business.config import BusinessRules
from cascade.online.export_layout import ExportLayout
from cascade.online.stages import RetrievalStage
from cascade.online.triton import StageContext, StageModel

EMPTY = np.empty(0, dtype=np.int64)


class TritonPythonModel(StageModel):
    stage_name = "retrieval"

    def build(self, context: StageContext) -> None:
        manifest = ExportLayout.for_model(context.repository).manifest()
        rules = BusinessRules.load(context.export_path("business_rules"))
        self.stage = RetrievalStage(context.export_path("index"), manifest.n_candidates, drop_seen=rules.drop_seen)

    def run(self, inputs):
        rows = self.stage.retrieve(inputs["query"], bool(inputs["cold_start"].reshape(-1)[0]), inputs["seen_items"],
                                   inputs.get("exclude_item_ids", EMPTY))
        return {"candidate_rows": rows.reshape(1, -1)}
