"""item_features: gather candidate features from the in-memory snapshot of the Feast item view
(reloaded when a newer materialization is published; see config.pbtxt)."""

import numpy as np

from cascade.online.stages import ItemFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "item_features"

    def build(self, context: StageContext) -> None:
        self.stage = ItemFeatureStage(
            context.export_path("feature_repo"),
            context.export_path("index"),
            load_workflow(context.export_path("workflow")),
            refresh_seconds=float(context.parameter("refresh_seconds", "30")),
        )
        self.logger.log_info(f"item_features: snapshot {self.stage.snapshot.version} ({len(self.stage.snapshot)} items)")
        self.refresh_failures = self.counter(
            "cascade_snapshot_refresh_failures_total", "Published item snapshots rejected at refresh (old one kept)")
        self._failures_seen = 0

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        refreshed = self.stage.maybe_refresh()
        if refreshed:
            self.logger.log_info(f"item_features: loaded newer snapshot {refreshed}")
        if self.stage.refresh_failures != self._failures_seen:
            self.refresh_failures.increment(self.stage.refresh_failures - self._failures_seen)
            self._failures_seen = self.stage.refresh_failures
            self.logger.log_error(f"item_features: snapshot {self.stage.rejected_version} rejected, "
                                  f"still serving {self.stage.snapshot.version}")
        features = self.stage.gather(inputs["candidate_rows"])  # [1, N]: one request of a batch
        outputs = {
            "candidate_item_ids": features.item_ids,
            **features.raw,
            "item_category": features.category_codes,
            "item_available": features.available,
            "snapshot_version": np.array([features.snapshot_version.encode()], dtype=object),
        }
        return {name: value[np.newaxis] for name, value in outputs.items()}
