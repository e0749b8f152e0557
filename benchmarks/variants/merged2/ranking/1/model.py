"""ranking + business_logic in one model (A/B variant, benchmarks/variants/README.md): gather the
encoded item rows, score them with the DLRM (one call per batch), then the business rules per request.
Phases: cascade_phase_seconds{model="ranking", phase=item_features|ranking|business_logic}."""

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates
from cascade.errors import InvalidInputError
from cascade.experiments.assign import CONTROL
from cascade.online.device import place_stage
from cascade.online.stages import BusinessLogicStage, ItemFeatureStage, RankingStage, candidate_extras, load_workflow
from cascade.online.torch_ranking import TorchRankingOptions
from cascade.online.triton import StageContext, StageModel

PHASES = ("item_features", "ranking", "business_logic")
EMPTY = np.empty(0, dtype=np.int64)
CONTROL_VARIANT = np.array([[CONTROL.encode()]], dtype=object)


class TritonPythonModel(StageModel):
    stage_name = "ranking"

    def build(self, context: StageContext) -> None:
        decision = place_stage(self)
        workflow = load_workflow(context.export_path("workflow"))
        self.items = ItemFeatureStage(context.export_path("feature_repo"), context.export_path("index"), workflow,
                                      refresh_seconds=float(context.parameter("refresh_seconds", "30")))
        self.stage = RankingStage(
            context.export_path("onnx"), workflow, intra_op_threads=int(context.parameter("intra_op_threads", "1")),
            device="gpu" if decision.on_gpu else "cpu", device_id=context.device_id,
            torch_options=TorchRankingOptions.from_parameters(
                {k: context.parameter(k, "") for k in ("torch_dtype", "torch_cuda_graphs", "torch_compile")}),
        )
        manifest = context.export_layout.manifest()
        self.rules = BusinessLogicStage(BusinessRules.load(context.model_path("rules")), manifest.version)
        self.filtered = self.counter("cascade_candidates_filtered_total", "Candidates dropped as seen, excluded or unavailable")
        self.clock = self.phases(*PHASES)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.run_batch([inputs])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        clock = self.clock
        clock.start()
        catalog = self.items.catalog
        features = [catalog.gather(i["candidate_rows"]) for i in batch]
        clock.lap("item_features")
        scores = self.stage.score_many(
            [(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch],
            [(f.cat, f.cont, f.lists) for f in features],
            [candidate_extras(i) for i in batch],
        )
        clock.lap("ranking")
        version = np.array([[self.rules.model_version(catalog.version).encode()]], dtype=object)
        out: list[dict[str, np.ndarray] | Exception] = []
        for inputs, s, f in zip(batch, scores, features):
            try:
                out.append(self._rules(inputs, s, f, version))
            except Exception as error:  # noqa: BLE001 - this request's answer
                out.append(error)
        clock.lap("business_logic")
        return out

    def _rules(self, inputs: dict[str, np.ndarray], scores: np.ndarray, f, version: np.ndarray) -> dict[str, np.ndarray]:
        if "explore" not in inputs:
            raise InvalidInputError("input 'explore' is required: FP32 of shape [1] (0 = deterministic ranking)")
        seed = inputs.get("seed")
        selection = self.rules.apply(
            Candidates(item_ids=f.item_ids, scores=np.asarray(scores).reshape(-1),
                       categories=self.rules.categories(f.category_keys), available=f.available),
            top_k=int(inputs["top_k"].reshape(-1)[0]), seen=inputs["seen_items"].reshape(-1),
            exclude=inputs.get("exclude_item_ids", EMPTY).reshape(-1),
            explore=float(inputs["explore"].reshape(-1)[0]),
            seed=None if seed is None else int(seed.reshape(-1)[0]),
        )
        self.filtered.increment(selection.n_filtered)
        return {"item_ids": selection.item_ids.reshape(1, -1), "scores": selection.scores.reshape(1, -1),
                "model_version": version, "degraded": inputs["cold_start"].reshape(1, 1).astype(bool),
                "seed_used": np.array([[selection.seed]], dtype=np.int64), "variant": CONTROL_VARIANT}

    def finalize(self) -> None:
        self.items.close()
        super().finalize()
