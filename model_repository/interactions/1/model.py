"""interactions: validate one user's events, log them, push the user's features (see config.pbtxt)."""

import numpy as np

from cascade.online.triton import StageContext, StageModel


def _log_url(context: StageContext) -> str:
    value = context.parameter("interaction_log", "interaction_log")
    if "://" in value:
        return value
    return str(context.export_path("interaction_log", "interaction_log"))


class TritonPythonModel(StageModel):
    stage_name = "interactions"

    def build(self, context: StageContext) -> None:
        from cascade.events.service import InteractionService

        self.service = InteractionService(
            context.export_path("feature_repo"),
            _log_url(context),
            future_tolerance_s=int(context.parameter("future_tolerance_seconds", "300")),
        )
        self.accepted = self.counter("cascade_events_accepted_total", "Interaction events logged and applied")
        self.duplicates = self.counter("cascade_events_duplicate_total", "Interaction events already logged (retries)")
        self.logger.log_info(f"interactions: log {self.service.log.url}, catalog {len(self.service.catalog.ids)} items")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.service.ingest(inputs)
        self.accepted.increment(result.accepted)
        self.duplicates.increment(result.duplicates)
        return {
            "accepted": np.array([result.accepted], dtype=np.int64),
            "duplicates": np.array([result.duplicates], dtype=np.int64),
            "n_interactions": np.array([result.n_interactions], dtype=np.int64),
        }
