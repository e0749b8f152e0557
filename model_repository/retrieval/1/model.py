"""retrieval: FAISS search -> candidate catalog rows (see config.pbtxt)."""

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
        rules = BusinessRules.load(context.export_path("business_rules"))  # the one drop_seen setting
        self.stage = RetrievalStage(context.export_path("index"), manifest.n_candidates, drop_seen=rules.drop_seen,
                                    feature_repo=context.export_path("feature_repo"),
                                    refresh_seconds=float(context.parameter("refresh_seconds", "30")))
        self.retrieved = self.counter("cascade_candidates_retrieved_total", "Candidates returned by the retrieval stage")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = self.stage.retrieve(
            inputs["query"],
            bool(inputs["cold_start"].reshape(-1)[0]),
            inputs["seen_items"],
            inputs.get("exclude_item_ids", EMPTY),
        )
        self.retrieved.increment(len(rows))
        return {"candidate_rows": rows.reshape(1, -1)}
