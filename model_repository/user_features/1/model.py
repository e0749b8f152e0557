"""user_features: validate the request, Feast online lookup, encode the user (see config.pbtxt)."""

import numpy as np

from cascade.errors import CascadeError
from cascade.online.request import MAX_TOP_K, RecommendRequest, parse_request
from cascade.online.stages import UserFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "user_features"

    def build(self, context: StageContext) -> None:
        manifest = context.export_layout.manifest()
        self.max_top_k = min(MAX_TOP_K, manifest.n_candidates)
        workflow = load_workflow(context.export_path("workflow"))
        self.stage = UserFeatureStage(context.export_path("feature_repo"), workflow,
                                      reader=context.parameter("feast_reader", "online_read"))
        self.cold_start = self.counter("cascade_cold_start_total", "Requests for users unknown to the feature store")
        self.degraded = self.counter(
            "cascade_degraded_total", "Requests answered degraded (cold start or feature-store failure)"
        )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.run_batch([inputs])[0]
        if isinstance(result, CascadeError):
            raise result
        return result

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | CascadeError]:
        """Validate each request (a bad one fails alone), then ONE Feast read and ONE workflow
        transform for all valid requests of the batch."""
        parsed: list[RecommendRequest | CascadeError] = []
        for inputs in batch:
            try:
                parsed.append(parse_request(inputs, self.max_top_k))
            except CascadeError as error:
                parsed.append(error)
        valid = [p for p in parsed if not isinstance(p, CascadeError)]
        users = iter(self.stage.lookup_many([p.user_id for p in valid]) if valid else [])
        results: list[dict[str, np.ndarray] | CascadeError] = []
        for request in parsed:
            if isinstance(request, CascadeError):
                results.append(request)
                continue
            user = next(users)
            if user.cold_start:
                self.cold_start.increment(1)
                self.degraded.increment(1)
            if user.feature_store_error:
                self.logger.log_warn(f"user_features: degraded answer: {user.feature_store_error}")
            results.append({  # [1, ...]: one request of a batch
                "user_cat": user.cat,
                "user_cont": user.cont,
                "user_lists": user.lists,
                "seen_items": user.seen_items.reshape(1, -1),
                "cold_start": np.array([[user.cold_start]]),
            })
        return results
