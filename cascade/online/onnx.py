"""ONNX Runtime sessions for serving: threads sized for small online batches, and the CUDA
execution provider when asked for the GPU. Without that provider a GPU session is refused
(:class:`UnavailableError`) unless ``allow_cpu_fallback``: never a silent CPU
(cascade/online/device.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cascade.errors import NotFoundError, UnavailableError

LOG = logging.getLogger(__name__)


class OnnxModel:
    def __init__(self, path: Path, *, intra_op_threads: int = 1, device: str = "cpu", device_id: int = 0,
                 allow_cpu_fallback: bool = False) -> None:
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
            elif allow_cpu_fallback:
                LOG.warning("GPU requested for %s but onnxruntime has no CUDAExecutionProvider; CPU fallback allowed", path)
            else:
                raise UnavailableError(
                    f"GPU requested for {Path(path).name} but onnxruntime {ort.__version__} has no "
                    f"CUDAExecutionProvider (available: {', '.join(ort.get_available_providers())})"
                )
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, {name: feeds[name] for name in self.input_names})
