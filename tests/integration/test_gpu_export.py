"""`cascade export --device gpu` against the real tritonserver on this machine, which has no GPU
(the GPU itself cannot be emulated here; benchmarks/gpu_check.py measures the GPU path on a lent
machine):

- the strict GPU export does not load ranking: Triton refuses its KIND_GPU instance group ("no GPUs
  are available"), and where Triton accepts the instance but PyTorch finds no usable GPU (a
  KIND_MODEL config override, as on a node whose image lacks CUDA torch) the stage itself fails the
  load with UnavailableError naming the device;
- the export with --allow-cpu-fallback loads, serves the same answers as the CPU pipeline (ONNX
  ranking, FAISS retrieval), and counts the fallback once per GPU stage in
  cascade_device_fallback_total{stage}."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

pytestmark = pytest.mark.integration

GPU_STAGES = ("candidates", "ranking")


@pytest.fixture(scope="module")
def gpu_exports(tiny_export, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cascade.workflows.export import export_repository

    data, cpu_export = tiny_export
    root = tmp_path_factory.mktemp("gpu-export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CASCADE_HOME", str(root / "home"))  # keep the suite's latest-export pointer
        strict = export_repository(data, root / "strict", artifacts_dir=cpu_export / "artifacts", device="gpu").root
        fallback = export_repository(data, root / "fallback", artifacts_dir=cpu_export / "artifacts", device="gpu",
                                     allow_cpu_fallback=True).root
    return strict, fallback


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _load(http: str, model: str, config: model_config_pb2.ModelConfig | None = None) -> tuple[int, str]:
    body = {}
    if config is not None:
        body = {"parameters": {"config": json_format.MessageToJson(config, preserving_proto_field_name=True)}}
    request = urllib.request.Request(f"http://{http}/v2/repository/models/{model}/load",
                                     data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=180) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_gpu_export_writes_gpu_configs_and_records_the_device(gpu_exports) -> None:
    from cascade.online.export_layout import ExportLayout

    strict, fallback = gpu_exports
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    for root, kind in ((strict, "KIND_GPU"), (fallback, "KIND_MODEL")):
        manifest = ExportLayout(root).manifest()
        assert manifest.device == "gpu" and manifest.allow_cpu_fallback is (root == fallback)
        for path in sorted((root / "model_repository").glob("*/config.pbtxt")):
            config = _config(path)
            if path.parent.name in GPU_STAGES:
                assert [kinds.Name(g.kind) for g in config.instance_group] == [kind], path
                assert config.parameters["device"].string_value == "gpu"
                assert len(config.model_warmup) == 1, "the warm-up sample survives the rewrite"
            elif config.instance_group:
                assert {kinds.Name(g.kind) for g in config.instance_group} == {"KIND_CPU"}, path


def test_strict_gpu_export_refuses_to_load_without_a_gpu(gpu_exports, tmp_path: Path) -> None:
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    strict, _ = gpu_exports
    http, grpc, metrics = free_ports(3)
    server = TritonServer(TritonServerConfig(model_repository=strict / "model_repository", http_port=http,
                                             grpc_port=grpc, metrics_port=metrics, model_control_mode="explicit",
                                             log_file=tmp_path / "triton.log"))
    server.start()
    try:
        server.wait_until_ready(120)
        code, text = _load(server.http_address, "ranking")
        assert code == 400 and "has kind KIND_GPU but no GPUs are available" in text, text
        # Triton accepts the instance (KIND_MODEL) but torch has no GPU: the stage refuses itself
        override = _config(strict / "model_repository" / "ranking" / "config.pbtxt")
        override.instance_group[0].kind = model_config_pb2.ModelInstanceGroup.Kind.KIND_MODEL
        code, text = _load(server.http_address, "ranking", override)
        assert code == 400, text
        assert "ranking: exported for the GPU (device=gpu) but no usable GPU" in text, text
        assert "--allow-cpu-fallback" in text
    finally:
        server.stop()


def _metric(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_fallback_export_serves_on_the_cpu_logged_and_counted(gpu_exports, tmp_path: Path) -> None:
    from cascade.client import RecommendClient
    from cascade.online.pipeline import InProcessRecommender
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    _, fallback = gpu_exports
    http, grpc, metrics = free_ports(3)
    server = TritonServer(TritonServerConfig(model_repository=fallback / "model_repository", http_port=http,
                                             grpc_port=grpc, metrics_port=metrics, log_file=tmp_path / "triton.log"))
    server.start()
    try:
        server.wait_until_ready(300)
        offline = InProcessRecommender.load(fallback)
        with RecommendClient(server.grpc_url) as client:
            for user in (1, 2, 3, 987_654_321):
                served = client.recommend(user, k=10)
                assert served.item_ids == offline.recommend(user, top_k=10).item_ids.tolist(), user
        deadline = time.monotonic() + 5  # counters are flushed every 0.2 s
        while time.monotonic() < deadline and _metric(server.metrics_url, "cascade_device_fallback_total") < 2:
            time.sleep(0.1)
        for stage in GPU_STAGES:
            assert _metric(server.metrics_url, "cascade_device_fallback_total", stage=stage) == 1, stage
    finally:
        server.stop()
    log = (tmp_path / "triton.log").read_text()
    for stage in GPU_STAGES:
        assert log.count(f"{stage}: exported for the GPU but no usable GPU") == 1, stage
