"""GPU path check for the ONNX stages (run on a machine with an NVIDIA GPU and onnxruntime with the
CUDA execution provider): the same `cascade.online.onnx.OnnxModel` the `ranking` and `query_tower`
stages use, on CPU and with device="gpu" (what a KIND_GPU instance group selects), compared on
real feeds saved from an export, and timed.

    python benchmarks/gpu_check.py --inputs DIR --out results.json

DIR holds dlrm.onnx, user_tower.onnx, dlrm_feeds.npz, tower_feeds.npz (saved from an export's
in-process pipeline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def _timed(model, feeds, repeats: int) -> float:
    model.run(feeds)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.run(feeds)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    import onnxruntime as ort

    from cascade.online.onnx import OnnxModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    result: dict = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers()}
    for name, feeds_file in (("dlrm", "dlrm_feeds.npz"), ("user_tower", "tower_feeds.npz")):
        feeds = dict(np.load(args.inputs / feeds_file))
        cpu = OnnxModel(args.inputs / f"{name}.onnx", device="cpu")
        gpu = OnnxModel(args.inputs / f"{name}.onnx", device="gpu")
        out_cpu, out_gpu = cpu.run(feeds)[0], gpu.run(feeds)[0]
        entry = {
            "gpu_session_providers": gpu.providers,
            "rows": int(next(iter(feeds.values())).shape[0]),
            "max_abs_diff_gpu_vs_cpu": float(np.max(np.abs(out_cpu - out_gpu))),
            "cpu_ms_p50": _timed(cpu, feeds, args.repeats),
            "gpu_ms_p50": _timed(gpu, feeds, args.repeats),
        }
        if name == "dlrm":  # a 10x larger candidate batch (3,000 rows)
            big = {k: np.concatenate([v] * 10) for k, v in feeds.items()}
            entry["rows_x10"] = int(next(iter(big.values())).shape[0])
            entry["cpu_ms_p50_x10"] = _timed(cpu, big, args.repeats // 4)
            entry["gpu_ms_p50_x10"] = _timed(gpu, big, args.repeats // 4)
        result[name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
