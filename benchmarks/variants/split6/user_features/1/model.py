"""A/B split6: validate + Feast + encode the user (see benchmarks/variants/README.md)."""

import numpy as np

from cascade.business.config import BusinessRules
from cascade.errors import CascadeError
from cascade.online.export_layout import ExportLayout
from cascade.online.request import MAX_TOP_K, parse_request
from cascade.online.stages import UserFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "user_features"

    def build(self, context: StageContext) -> None:
        self.max_top_k = min(MAX_TOP_K, ExportLayout.for_model(context.repository).manifest().n_candidates)
        self.max_explore = BusinessRules.load(context.export_path("rules")).max_explore_temperature
        self.stage = UserFeatureStage(context.export_path("feature_repo"), load_workflow(context.export_path("workflow")))

    def run(self, inputs):
        result = self.run_batch([inputs])[0]
        if isinstance(result, CascadeError):
            raise result
        return result

    def run_batch(self, batch):
        parsed = []
        for inputs in batch:
            try:
                parsed.append(parse_request(inputs, self.max_top_k, self.max_explore))
            except CascadeError as error:
                parsed.append(error)
        valid = [p for p in parsed if not isinstance(p, CascadeError)]
        users = iter(self.stage.lookup_many([p.user_id for p in valid]) if valid else [])
        out = []
        for p in parsed:
            if isinstance(p, CascadeError):
                out.append(p)
                continue
            u = next(users)
            out.append({"user_cat": u.cat, "user_cont": u.cont, "user_lists": u.lists,
                        "seen_items": u.seen_items.reshape(1, -1), "cold_start": np.array([[u.cold_start]])})
        return out
