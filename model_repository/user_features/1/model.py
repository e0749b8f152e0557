"""user_features: validate the request, Feast online lookup, encode the user (see config.pbtxt)."""

import time

import numpy as np

from cascade.errors import CascadeError
from cascade.features.guard import REASONS, GuardConfig
from cascade.online.export_layout import ExportLayout
from cascade.online.request import MAX_TOP_K, RecommendRequest, parse_request
from cascade.online.stages import UserFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "user_features"

    def build(self, context: StageContext) -> None:
        manifest = ExportLayout.for_model(context.repository).manifest()
        self.max_top_k = min(MAX_TOP_K, manifest.n_candidates)
        workflow = load_workflow(context.export_path("workflow"))
        self.stage = UserFeatureStage(context.export_path("feature_repo"), workflow,
                                      reader=context.parameter("feast_reader", "online_read"),
                                      guard=GuardConfig.from_parameters(context.parameter))
        self.cold_start = self.counter("cascade_cold_start_total", "Requests for users unknown to the feature store")
        self.degraded = {  # one labelled series per reason, created at load so they show from the start
            reason: self.counter("cascade_degraded_total",
                                 "Requests answered degraded (popular items), by reason", {"reason": reason})
            for reason in ("cold_start", *REASONS)
        }

    def _warn(self, reason: str | None, error: str) -> None:
        """One log line per reason change or per 10 s: an outage must not flood the log."""
        now = time.monotonic()
        if reason != getattr(self, "_warned_reason", None) or now - getattr(self, "_warned_at", 0.0) > 10.0:
            self._warned_reason, self._warned_at = reason, now
            self.logger.log_warn(f"user_features: degraded answers ({reason}): {error}")

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
            if user.degraded_reason == "cold_start":
                self.cold_start.increment(1)
            if user.degraded_reason:
                self.degraded[user.degraded_reason].increment(1)
            if user.feature_store_error:
                self._warn(user.degraded_reason, user.feature_store_error)
            results.append({  # [1, ...]: one request of a batch
                "user_cat": user.cat,
                "user_cont": user.cont,
                "user_lists": user.lists,
                "seen_items": user.seen_items.reshape(1, -1),
                "cold_start": np.array([[user.cold_start]]),
            })
        return results
