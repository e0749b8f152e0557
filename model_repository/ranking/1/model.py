"""ranking: gather the candidates' encoded item rows (encoded once per item snapshot), score them
with the DLRM (ONNX Runtime on the CPU, PyTorch on a GPU: see config.pbtxt and
cascade/online/device.py; a GPU export without a usable GPU fails to load unless it allows the CPU
fallback), then the business rules per request (filters, category caps, boosts, seeded exploration,
top-k; rules in business_rules.yaml beside this file). The rules were their own model until round 5:
one Python-backend hop less per request (benchmarks/NOTES.md)."""

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates
from cascade.errors import InvalidInputError
from cascade.experiments.assign import CONTROL
from cascade.online.catalog import CandidateFeatures
from cascade.online.device import place_stage
from cascade.online.stages import BusinessLogicStage, ItemFeatureStage, RankingStage, candidate_extras, load_workflow
from cascade.online.torch_ranking import TorchRankingOptions
from cascade.online.triton import StageContext, StageModel

PHASES = ("item_features", "ranking", "business_logic")
SNAPSHOT_FAILURES_METRIC = "cascade_snapshot_refresh_failures_total"
EMPTY = np.empty(0, dtype=np.int64)
CONTROL_VARIANT = np.array([[CONTROL.encode()]], dtype=object)


class TritonPythonModel(StageModel):
    stage_name = "ranking"

    def build(self, context: StageContext) -> None:
        decision = place_stage(self)  # raises (load fails) for a GPU export without a usable GPU
        workflow = load_workflow(context.export_path("workflow"))
        failures = self.counter(SNAPSHOT_FAILURES_METRIC, "Item snapshots rejected at refresh (the old one kept serving)")

        def rejected(version: str, error: BaseException) -> None:
            failures.increment(1)
            self.logger.log_error(f"ranking: item snapshot {version} rejected, old one keeps serving: "
                                  f"{type(error).__name__}: {error}")

        self.items = ItemFeatureStage(
            context.export_path("feature_repo"), context.export_path("index"), workflow,
            refresh_seconds=float(context.parameter("refresh_seconds", "30")), on_refresh_failure=rejected,
        )
        self.stage = RankingStage(
            context.export_path("onnx"), workflow,
            intra_op_threads=int(context.parameter("intra_op_threads", "1")),
            device="gpu" if decision.on_gpu else "cpu", device_id=context.device_id,
            torch_options=TorchRankingOptions.from_parameters(
                {k: context.parameter(k, "") for k in ("torch_dtype", "torch_cuda_graphs", "torch_compile")}
            ),
        )
        manifest = context.export_layout.manifest()
        self.rules = BusinessLogicStage(BusinessRules.load(context.model_path("rules")), manifest.version)
        self.filtered = self.counter(
            "cascade_candidates_filtered_total", "Candidates dropped as seen, excluded or unavailable"
        )
        self.clock = self.phases(*PHASES)
        catalog = self.items.catalog
        self.logger.log_info(f"ranking: {decision.torch_device}, backend {self.stage.model.providers}; item snapshot {catalog.version} "
                             f"({len(catalog)} items) encoded in {catalog.prepare_seconds:.2f} s")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.run_batch([inputs])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        """user_* [1, ...], candidate_rows [1, N] and the request's rule inputs per request -> the
        answer [1, k]. The whole batch is one gather and one DLRM call (on the GPU for a GPU export,
        the scores come back to the host once per batch); the rules run per request on the CPU, and a
        request whose rule inputs are bad fails alone."""
        clock = self.clock
        clock.start()
        catalog = self.items.catalog  # one snapshot for the whole batch, even if a swap happens meanwhile
        features = [catalog.gather(i["candidate_rows"]) for i in batch]
        clock.lap("item_features")
        scores = self.stage.score_many(
            [(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch],
            [(f.cat, f.cont, f.lists) for f in features],
            [candidate_extras(i) for i in batch],
        )
        clock.lap("ranking")
        version = np.array([[self.rules.model_version(catalog.version).encode()]], dtype=object)
        results: list[dict[str, np.ndarray] | Exception] = []
        for inputs, request_scores, request_features in zip(batch, scores, features):
            try:
                results.append(self.select(inputs, request_scores, request_features, version))
            except Exception as error:  # noqa: BLE001 - this request's answer (StageModel.execute)
                results.append(error)
        clock.lap("business_logic")
        return results

    def select(self, inputs: dict[str, np.ndarray], scores: np.ndarray, features: CandidateFeatures,
               version: np.ndarray) -> dict[str, np.ndarray]:
        """The business rules for one request of a batch."""
        rules = self.rules
        if "explore" not in inputs:
            raise InvalidInputError("input 'explore' is required: FP32 of shape [1] (0 = deterministic ranking)")
        seed = inputs.get("seed")
        selection = rules.apply(
            Candidates(item_ids=features.item_ids, scores=np.asarray(scores).reshape(-1),
                       categories=rules.categories(features.category_keys), available=features.available),
            top_k=int(inputs["top_k"].reshape(-1)[0]),
            seen=inputs["seen_items"].reshape(-1),
            exclude=inputs.get("exclude_item_ids", EMPTY).reshape(-1),
            explore=float(inputs["explore"].reshape(-1)[0]),
            seed=None if seed is None else int(seed.reshape(-1)[0]),
        )
        self.filtered.increment(selection.n_filtered)
        return {  # [1, ...]: one request of a batch (the ensemble's outputs drop that dim)
            "item_ids": selection.item_ids.reshape(1, -1),
            "scores": selection.scores.reshape(1, -1),
            "model_version": version,
            "degraded": inputs["cold_start"].reshape(1, 1).astype(bool),
            "seed_used": np.array([[selection.seed]], dtype=np.int64),
            "variant": CONTROL_VARIANT,  # the plain ensemble: no experiment, everyone is the control
        }

    def finalize(self) -> None:
        self.items.close()
        super().finalize()
