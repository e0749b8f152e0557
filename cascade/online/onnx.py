"""ONNX Runtime sessions for serving: threads sized for small online batches, and the CUDA
execution provider when the Triton instance is a GPU (falling back to CPU, logged)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cascade.errors import NotFoundError

LOG = logging.getLogger(__name__)


class OnnxModel:
    def __init__(self, path: Path, *, intra_op_threads: int = 1, device: str = "cpu", device_id: int = 0) -> None:
        import onnxruntime as ort

        if not Path(path).is_file():
            raise NotFoundError(f"ONNX model {path} does not exist (export the model repository again)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(intra_op_threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list = ["CPUExecutionProvider"]
        if device.lower() == "gpu":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
            else:
                LOG.warning("GPU instance requested but onnxruntime has no CUDAExecutionProvider; using CPU")
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, {name: feeds[name] for name in self.input_names})
