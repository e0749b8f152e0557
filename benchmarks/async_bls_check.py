"""Does ``async def execute`` + ``await InferenceRequest.async_exec()`` let ONE instance of a
non-decoupled Python (BLS) model keep several requests in flight on the bundled tritonserver 2.51?

    python -m benchmarks.async_bls_check --out benchmarks/results/router-async-check.json

Three python-backend models in a temporary repository: ``sleeper`` (8 instances, sleeps 0.2 s per
request), ``router_sync`` (1 instance, blocking ``exec()`` to sleeper) and ``router_async`` (1
instance, ``async def execute`` awaiting ``asyncio.gather`` of ``async_exec()`` calls). 8 concurrent
gRPC requests go to each, in turn (sync, async, sleeper, async, sync). If async execute overlapped
requests, router_async would answer all 8 in ~0.2 s; 8 x 0.2 = 1.6 s means one at a time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = '''name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_INT64 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: {count} }} ]
'''
SOURCES = {
    "sleeper": '''import time
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            time.sleep(0.2)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]))
        return out
''',
    "router_sync": '''import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(pb_utils.InferenceRequest(model_name="sleeper",
                inputs=[pb_utils.get_input_tensor_by_name(r, "X")], requested_output_names=["Y"]).exec().output_tensors())
                for r in requests]
''',
    "router_async": '''import asyncio
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    async def execute(self, requests):
        answers = await asyncio.gather(*[pb_utils.InferenceRequest(model_name="sleeper",
            inputs=[pb_utils.get_input_tensor_by_name(r, "X")], requested_output_names=["Y"]).async_exec() for r in requests])
        return [pb_utils.InferenceResponse(a.output_tensors()) for a in answers]
''',
}


def run(out: Path | None) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        for name, source in SOURCES.items():
            (repo / name / "1").mkdir(parents=True)
            (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, count=8 if name == "sleeper" else 1))
            (repo / name / "1" / "model.py").write_text(source)
        http, grpc, metrics = free_ports(3)
        server = TritonServer(TritonServerConfig(model_repository=repo, http_port=http, grpc_port=grpc, metrics_port=metrics,
                                                 log_file=Path(tmp) / "triton.log", exit_timeout_s=5))
        server.start()
        walls: dict[str, list[float]] = {}
        try:
            server.wait_until_ready(180)

            def one(model: str, i: int) -> int:
                client = grpcclient.InferenceServerClient(server.grpc_url)
                x = grpcclient.InferInput("X", [1], "INT64")
                x.set_data_from_numpy(np.array([i], np.int64))
                return int(client.infer(model, [x]).as_numpy("Y")[0])

            for model in ("router_sync", "router_async", "sleeper", "router_async", "router_sync"):
                with ThreadPoolExecutor(8) as pool:
                    start = time.perf_counter()
                    got = list(pool.map(lambda i, m=model: one(m, i), range(8)))
                    wall = time.perf_counter() - start
                assert got == list(range(8)), got
                walls.setdefault(model, []).append(round(wall, 3))
        finally:
            server.stop()
    result = {"benchmark": "async_bls_check", "tritonserver": "2.51 (nvidia-pytriton 0.7.0 wheel)",
              "requests": 8, "seconds_per_request": 0.2, "wall_s": walls,
              "overlaps": min(walls["router_async"]) < 0.8,
              "note": "1 instance each; wall ~0.2 s = 8 in flight, ~1.6 s = one at a time (first sync run includes warm-up)"}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    print(json.dumps(run(parser.parse_args().out), indent=2))


if __name__ == "__main__":
    main()
