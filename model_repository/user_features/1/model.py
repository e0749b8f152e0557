"""user_features: validate the request, Feast online lookup, encode the user (see config.pbtxt)."""

import numpy as np

from cascade.online.export_layout import ExportLayout
from cascade.online.request import MAX_TOP_K, parse_request
from cascade.online.stages import UserFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "user_features"

    def build(self, context: StageContext) -> None:
        manifest = ExportLayout.for_model(context.repository).manifest()
        self.max_top_k = min(MAX_TOP_K, manifest.n_candidates)
        workflow = load_workflow(context.export_path("workflow"))
        self.stage = UserFeatureStage(context.export_path("feature_repo"), workflow,
                                      reader=context.parameter("feast_reader", "online_read"))
        self.cold_start = self.counter("cascade_cold_start_total", "Requests for users unknown to the feature store")
        self.degraded = self.counter(
            "cascade_degraded_total", "Requests answered degraded (cold start or feature-store failure)"
        )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = parse_request(inputs, self.max_top_k)
        user = self.stage.lookup(request.user_id)
        if user.cold_start:
            self.cold_start.increment(1)
            self.degraded.increment(1)
        if user.feature_store_error:
            self.logger.log_warn(f"user_features: degraded answer: {user.feature_store_error}")
        return {
            "user_cat": user.cat,
            "user_cont": user.cont,
            "user_lists": user.lists,
            "seen_items": user.seen_items,
            "cold_start": np.array([user.cold_start]),
        }
