"""The DLRM on PyTorch: the ranking stage's backend on a GPU (ONNX Runtime stays the CPU backend).

:class:`TorchRanker` takes exactly the feeds ``dlrm.onnx`` takes (the workflow outputs by name: the
U user rows, the N candidate rows, and ``user_row`` [N]) and returns the same ``score`` [N], so
:class:`cascade.online.stages.RankingStage` swaps it in for :class:`cascade.online.onnx.OnnxModel`:
the user side runs once per user row and a batch of requests is one call, as in the ONNX graph
(both are :class:`cascade.models.dlrm.DLRM`).

Options (:class:`TorchRankingOptions`), each measured by ``benchmarks/gpu_check.py``:

- ``dtype``: ``float16``/``bfloat16`` matrix products under autocast (weights stay float32; the
  frozen two-tower and the retrieval-score residual run in float32; logits are returned float32),
  see :func:`_mixed_precision` for the measured parity.
- ``cuda_graphs``: inputs are padded to power-of-two buckets of users and candidates and a graph
  is captured per bucket on first use, then replayed (one launch instead of ~100 small kernels).
  Padding rows are independent rows (every DLRM op is per row), so the first N scores are exact.
  ``static_shapes`` pads without graphs (testable on a CPU).
- ``compile``: ``torch.compile(dynamic=True)`` of the model (not combined with graphs).
- ``pinned``: page-locked host staging buffers, reused across calls, for the host-to-device and
  device-to-host copies (CUDA only).

Imports only numpy, torch and ``cascade.models`` (lazily), so ``benchmarks/gpu_check.py`` can use it
on a machine without Feast, FAISS or an installed cascade.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cascade.errors import InvalidInputError

USER_ROW = "user_row"
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TorchRankingOptions:
    dtype: str = "float32"
    cuda_graphs: bool = False
    static_shapes: bool = False
    compile: bool = False
    pinned: bool = True
    max_users: int = 32  # largest user bucket (a stage batch is at most max_batch_size requests)
    min_candidates: int = 256  # smallest candidate bucket
    max_candidates: int = 1 << 16  # larger calls run without padding/graphs

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"torch ranking dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.cuda_graphs and self.compile:
            raise InvalidInputError("torch ranking: choose cuda_graphs or compile, not both")

    @property
    def padded(self) -> bool:
        return self.cuda_graphs or self.static_shapes

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> "TorchRankingOptions":
        """From a stage's config.pbtxt parameters ``torch_dtype``, ``torch_cuda_graphs``, ``torch_compile``."""
        def flag(key: str) -> bool:
            value = (parameters.get(key) or "false").strip().lower()
            if value not in ("true", "false"):
                raise InvalidInputError(f"parameter {key} must be 'true' or 'false', got {value!r}")
            return value == "true"

        return cls(dtype=(parameters.get("torch_dtype") or "float32").strip().lower(),
                   cuda_graphs=flag("torch_cuda_graphs"), compile=flag("torch_compile"))


def bucket(n: int, minimum: int) -> int:
    """The smallest power of two >= max(n, minimum)."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


class _Pinned:
    """Page-locked host buffers by name, grown on demand and reused."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, Any], Any] = {}

    def stage(self, name: str, array: np.ndarray) -> Any:
        import torch

        array = np.ascontiguousarray(array)
        key = (name, torch.from_numpy(array).dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < array.size:
            buf = torch.empty(max(array.size, 1) * 2, dtype=key[1], pin_memory=True)
            self.buffers[key] = buf
        view = buf[: array.size].view(array.shape)
        view.numpy()[...] = array
        return view


def _float32_island(module: Any) -> Any:
    """``module`` run in float32 with autocast off, inside a half-precision model."""
    import torch

    class Float32(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner.float()

        def forward(self, features: Any) -> Any:
            device_type = next(self.inner.parameters()).device.type
            with torch.autocast(device_type=device_type, enabled=False):
                return self.inner(features).float()

    return Float32(module)


def _mixed_precision(model: Any) -> Any:
    """The DLRM for autocast in half precision: weights and embedding tables stay float32 (autocast
    runs the matrix products - MLPs, interactions - in half precision, casting the small weights
    per call, or once inside a CUDA graph), and the frozen two-tower runs in float32 with autocast
    off: its query x item product is divided by the temperature (0.05) and added to the logit, so
    its rounding would dominate the score error. Measured on a CPU (tests/unit/online/
    test_torch_ranking.py): float16 max |diff| ~1e-4 vs ONNX float32, bfloat16 ~8e-4; converting
    the weights to float16 as well gave 1.5e-3 (bfloat16 2e-2)."""
    two_tower = getattr(model, "two_tower", None)
    if two_tower is not None:
        two_tower.user_tower = _float32_island(two_tower.user_tower)
        two_tower.item_tower = _float32_island(two_tower.item_tower)
    return model


class TorchRanker:
    """A DLRM on ``device`` with the ONNX model's calling convention (``run(feeds) -> [scores]``)."""

    def __init__(self, model: Any, device: str = "cpu", options: TorchRankingOptions | None = None) -> None:
        import torch

        self.options = options = options or TorchRankingOptions()
        self.device = torch.device(device)
        if options.cuda_graphs and self.device.type != "cuda":
            raise InvalidInputError(f"torch ranking: cuda_graphs needs a CUDA device, got {device!r}")
        self.dtype = getattr(torch, options.dtype)
        model = model.eval().to(self.device)
        if self.dtype != torch.float32:
            model = _mixed_precision(copy.deepcopy(model))  # the caller's model is left as it was
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.specs = {s.name: s for s in model.specs}
        self.input_names = [s.name for s in model.specs] + [USER_ROW]
        self._fn = torch.compile(model, dynamic=True) if options.compile else model
        self._pinned = _Pinned() if (options.pinned and self.device.type == "cuda") else None
        self._graphs: dict[tuple[int, int], tuple[Any, dict[str, Any], Any]] = {}
        self._pool = torch.cuda.graph_pool_handle() if options.cuda_graphs else None  # graphs replay one at a time
        self.providers = [f"torch:{self.device}:{options.dtype}"
                          + (":cuda_graphs" if options.cuda_graphs else "") + (":compile" if options.compile else "")]

    @classmethod
    def from_artifacts(cls, ranking_dir: Path, retrieval_dir: Path, device: str = "cpu",
                       options: TorchRankingOptions | None = None) -> "TorchRanker":
        from cascade.models.checkpoint import load_dlrm, load_two_tower

        two_tower = load_two_tower(retrieval_dir) if (Path(retrieval_dir) / "model.pt").is_file() else None
        return cls(load_dlrm(ranking_dir, two_tower), device, options)

    # --- one call ------------------------------------------------------------------------------
    def _to_device(self, name: str, array: np.ndarray) -> Any:
        import torch

        if self._pinned is not None:
            return self._pinned.stage(name, array).to(self.device, non_blocking=True)
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def _autocast(self) -> Any:
        import torch

        return torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _forward(self, fn: Any, tensors: dict[str, Any]) -> Any:
        with self._autocast():
            user_row = tensors.pop(USER_ROW)
            return fn(tensors, user_row=user_row).float()

    def _check(self, feeds: dict[str, np.ndarray]) -> tuple[int, int]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InvalidInputError(f"torch ranking: missing inputs {missing}")
        n = int(np.asarray(feeds[USER_ROW]).shape[0])
        users = {int(np.asarray(feeds[s.name]).shape[0]) for s in self.specs.values() if s.entity == "user"}
        u = users.pop() if len(users) == 1 else -1
        if u < 1 and n:
            raise InvalidInputError(f"torch ranking: user inputs must share one batch size >= 1, got {sorted(users)}")
        return u, n

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``[scores float32 [N]]`` for the feeds of ``dlrm.onnx``."""
        import torch

        u, n = self._check(feeds)
        if n == 0:
            return [np.empty(0, dtype=np.float32)]
        o = self.options
        with torch.inference_mode():
            if o.padded and u <= o.max_users and n <= o.max_candidates:
                ub, nb = bucket(u, 1), bucket(n, o.min_candidates)
                if o.cuda_graphs:
                    scores = self._replay(feeds, u, n, ub, nb)
                else:
                    scores = self._forward(self._fn, self._padded(feeds, u, n, ub, nb))[:n]
            else:
                tensors = {name: self._to_device(name, np.asarray(feeds[name])) for name in self.input_names}
                scores = self._forward(self._fn, tensors)
            return [scores.cpu().numpy()]

    def _padded(self, feeds: dict[str, np.ndarray], u: int, n: int, ub: int, nb: int) -> dict[str, Any]:
        out = {}
        for name in self.input_names:
            value = np.asarray(feeds[name])
            rows = ub if name != USER_ROW and self.specs[name].entity == "user" else nb
            padded = np.zeros((rows,) + value.shape[1:], dtype=value.dtype)
            padded[: value.shape[0]] = value
            out[name] = self._to_device(name, padded)
        return out

    # --- CUDA graphs ----------------------------------------------------------------------------
    def _static_inputs(self, feeds: dict[str, np.ndarray], ub: int, nb: int) -> dict[str, Any]:
        import torch

        static = {}
        for name in self.input_names:
            value = np.asarray(feeds[name])
            rows = ub if name != USER_ROW and self.specs[name].entity == "user" else nb
            static[name] = torch.zeros((rows,) + value.shape[1:], dtype=torch.from_numpy(value[:0]).dtype,
                                       device=self.device)
        return static

    def _capture(self, feeds: dict[str, np.ndarray], ub: int, nb: int) -> tuple[Any, dict[str, Any], Any]:
        import torch

        static = self._static_inputs(feeds, ub, nb)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up on a side stream (allocations, cuBLAS handles) before capture
                self._forward(self.model, dict(static))
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self._forward(self.model, dict(static))
        return graph, static, out

    def _replay(self, feeds: dict[str, np.ndarray], u: int, n: int, ub: int, nb: int) -> Any:
        key = (ub, nb)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(feeds, ub, nb)
        graph, static, out = entry
        # rows beyond u / n keep earlier valid values (zeros or a previous call's rows of this
        # bucket): every op is per row, so they never touch the first n scores
        for name in self.input_names:
            value = np.asarray(feeds[name])
            static[name][: value.shape[0]].copy_(self._to_host(name, value), non_blocking=True)
        graph.replay()
        return out[:n]

    def _to_host(self, name: str, array: np.ndarray) -> Any:
        import torch

        if self._pinned is not None:
            return self._pinned.stage(name, array)
        return torch.from_numpy(np.ascontiguousarray(array))
