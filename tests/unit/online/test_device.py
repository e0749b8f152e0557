"""Device placement (cascade/online/device.py): the export-time rewrite of the real stage configs
through Triton's ModelConfig protobuf, and the load-time rule that a GPU stage without a usable GPU
refuses to run unless the export allows the (logged, counted) CPU fallback. This machine has no
GPU, so :func:`cuda_status` answers for real here; a probe that reports a GPU stands in for one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cascade.errors import InvalidInputError, UnavailableError
from cascade.online.device import (
    apply_device,
    cuda_status,
    resolve_device,
    rewrite_config,
    stage_device,
)

ROOT = Path(__file__).resolve().parents[3]
GPU_STAGES = {"candidates", "ranking"}
KIND = model_config_pb2.ModelInstanceGroup.Kind


def _copy_sources(tmp_path: Path) -> Path:
    repo = tmp_path / "model_repository"
    shutil.copytree(ROOT / "model_repository", repo)
    return repo


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("device,fallback,kind", [
    ("cpu", False, "KIND_CPU"), ("gpu", False, "KIND_GPU"), ("gpu", True, "KIND_MODEL"),
])
def test_export_rewrite_places_only_the_gpu_capable_stages(tmp_path: Path, device: str, fallback: bool, kind: str) -> None:
    repo = _copy_sources(tmp_path)
    before = {p.parent.name: p.read_text() for p in repo.glob("*/config.pbtxt")}
    placements = {p.model: p for p in apply_device(repo, device, fallback)}
    assert {m for m, p in placements.items() if p.gpu_capable} == GPU_STAGES
    for name, text in before.items():
        path = repo / name / "config.pbtxt"
        if name not in GPU_STAGES:
            assert path.read_text() == text, f"{name} must be left byte for byte"
            continue
        config = _config(path)
        assert {KIND.Name(g.kind) for g in config.instance_group} == {kind}
        assert config.parameters["device"].string_value == device
        assert config.parameters["allow_cpu_fallback"].string_value == ("true" if fallback else "false")
        original = _config(ROOT / "model_repository" / name / "config.pbtxt")
        assert [i.name for i in config.input] == [i.name for i in original.input]  # nothing else changed
        assert config.dynamic_batching == original.dynamic_batching
        assert path.read_text().startswith("#"), "the leading comment block is kept"
        again, _ = rewrite_config(path.read_text(), device, fallback)
        assert _config_text(again) == _config_text(path.read_text()), "rewriting twice changes nothing"


def _config_text(text: str) -> str:
    return text_format.MessageToString(text_format.Parse(text, model_config_pb2.ModelConfig()))


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    repo = _copy_sources(tmp_path)
    with pytest.raises(InvalidInputError, match="--device must be one of cpu, gpu"):
        apply_device(repo, "tpu")
    with pytest.raises(InvalidInputError, match="--allow-cpu-fallback only applies to --device gpu"):
        apply_device(repo, "cpu", allow_cpu_fallback=True)
    (repo / "ranking" / "config.pbtxt").write_text("name: ranking instance_group [")
    with pytest.raises(InvalidInputError, match=r"ranking/config.pbtxt: not a valid Triton model config"):
        apply_device(repo, "gpu")


def test_gpu_export_without_any_gpu_capable_stage_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "python"\ninstance_group [ { kind: KIND_CPU } ]\n')
    with pytest.raises(InvalidInputError, match="nothing would use the GPU"):
        apply_device(repo, "gpu")


def test_this_machine_has_no_usable_gpu_and_a_gpu_stage_refuses_to_load() -> None:
    usable, reason = cuda_status(0)
    if usable:  # pragma: no cover - on a GPU machine this test has nothing to show
        pytest.skip("a GPU is present")
    assert "sees no CUDA device" in reason
    with pytest.raises(UnavailableError, match=r"ranking: exported for the GPU \(device=gpu\) but no usable GPU: torch"):
        resolve_device("ranking", "gpu", allow_cpu_fallback=False)
    decision = resolve_device("ranking", "gpu", allow_cpu_fallback=True)
    assert decision.fell_back and decision.torch_device == "cpu" and not decision.on_gpu and decision.reason == reason
    assert resolve_device("ranking", "cpu", allow_cpu_fallback=False).torch_device == "cpu"


def test_a_usable_gpu_is_used_and_never_counts_as_fallback() -> None:
    decision = resolve_device("retrieval", "gpu", allow_cpu_fallback=True, device_id=1, probe=lambda i: (True, ""))
    assert decision.on_gpu and decision.torch_device == "cuda:1" and not decision.fell_back


def test_stage_device_reads_parameters_then_the_instance_kind() -> None:
    params = {"device": "gpu", "allow_cpu_fallback": "true"}
    get = lambda key, default=None: params.get(key, default)  # noqa: E731 - StageContext.parameter's signature
    assert stage_device(get, "MODEL") == ("gpu", True)
    params.clear()
    assert stage_device(get, "GPU") == ("gpu", False)
    assert stage_device(get, "CPU") == ("cpu", False)
    params["allow_cpu_fallback"] = "maybe"
    with pytest.raises(InvalidInputError, match="allow_cpu_fallback must be 'true' or 'false'"):
        stage_device(get, "CPU")


def test_export_cli_checks_the_device_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    base = ["export", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "export")]
    bad = CliRunner().invoke(app, [*base, "--device", "tpu"])
    assert bad.exit_code != 0 and "--device must be one of cpu, gpu, got 'tpu'" in bad.output, bad.output
    mixed = CliRunner().invoke(app, [*base, "--allow-cpu-fallback"])
    assert mixed.exit_code != 0 and "--allow-cpu-fallback only applies to --device gpu" in mixed.output, mixed.output
    assert not (tmp_path / "export").exists()
