"""ranking: the DLRM, on ONNX Runtime on the CPU or on PyTorch on a GPU (see config.pbtxt and
cascade/online/device.py: a GPU export without a usable GPU fails to load unless it allows the
CPU fallback)."""

import numpy as np

from cascade.online.device import place_stage
from cascade.online.stages import RankingStage, load_workflow
from cascade.online.torch_ranking import TorchRankingOptions
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "ranking"

    def build(self, context: StageContext) -> None:
        decision = place_stage(self)
        self.stage = RankingStage(
            context.export_path("onnx"),
            load_workflow(context.export_path("workflow")),
            intra_op_threads=int(context.parameter("intra_op_threads", "1")),
            device="gpu" if decision.on_gpu else "cpu",
            device_id=context.device_id,
            torch_options=TorchRankingOptions.from_parameters(
                {k: context.parameter(k, "") for k in ("torch_dtype", "torch_cuda_graphs", "torch_compile")}
            ),
        )
        self.logger.log_info(f"ranking: {decision.torch_device}, backend {self.stage.model.providers}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_batch([inputs])[0]

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """user_* [1, ...] and rank_* [1, N, ...] per request -> ranking_scores [1, N]; the whole
        batch is one model call (each candidate row points at its request's user row)."""
        scores = self.stage.score_many(
            [(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch],
            [(i["rank_cat"][0], i["rank_cont"][0], i["rank_lists"][0]) for i in batch],
        )
        return [{"ranking_scores": s[np.newaxis]} for s in scores]
