"""ranking: gather the candidates' encoded item rows (encoded once per item snapshot) and score
them with the DLRM: ONNX Runtime on the CPU, PyTorch on a GPU (see config.pbtxt and
cascade/online/device.py: a GPU export without a usable GPU fails to load unless it allows the
CPU fallback)."""

import numpy as np

from cascade.online.device import place_stage
from cascade.online.stages import ItemFeatureStage, RankingStage, candidate_extras, load_workflow
from cascade.online.torch_ranking import TorchRankingOptions
from cascade.online.triton import StageContext, StageModel

PHASES = ("item_features", "ranking")
SNAPSHOT_FAILURES_METRIC = "cascade_snapshot_refresh_failures_total"


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
        self.clock = self.phases(*PHASES)
        catalog = self.items.catalog
        self.logger.log_info(f"ranking: {decision.torch_device}, backend {self.stage.model.providers}; item snapshot {catalog.version} "
                             f"({len(catalog)} items) encoded in {catalog.prepare_seconds:.2f} s")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_batch([inputs])[0]

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """user_* [1, ...] and candidate_rows [1, N] per request -> scores and the candidates'
        ids/category keys/availability [1, N]; the whole batch is one DLRM call."""
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
        version = np.array([[catalog.version.encode()]], dtype=object)
        return [{
            "ranking_scores": s[np.newaxis],
            "candidate_item_ids": f.item_ids[np.newaxis],
            "item_category": f.category_keys[np.newaxis],
            "item_available": f.available[np.newaxis],
            "snapshot_version": version,
        } for s, f in zip(scores, features)]

    def finalize(self) -> None:
        self.items.close()
        super().finalize()
