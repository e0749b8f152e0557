"""Device placement of the stages: the export-time rewrite of ``config.pbtxt`` and the load-time
check that a GPU stage really has a GPU (no silent CPU).

**Export** (``cascade export --device cpu|gpu [--allow-cpu-fallback]``): a stage whose config has
``parameters { key: "gpu_capable" value: { string_value: "true" } }`` is placed on the device; the
others keep their ``KIND_CPU`` groups and are not touched. Configs are parsed and emitted through
Triton's ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``), never with regexes.

| export | instance_group kind | ``device`` | ``allow_cpu_fallback`` |
|---|---|---|---|
| ``--device cpu`` (default) | ``KIND_CPU`` | ``cpu`` | ``false`` |
| ``--device gpu`` | ``KIND_GPU`` | ``gpu`` | ``false`` |
| ``--device gpu --allow-cpu-fallback`` | ``KIND_MODEL`` | ``gpu`` | ``true`` |

Measured on the bundled tritonserver 2.51 on a machine without a GPU: Triton itself refuses a
``KIND_GPU`` group before the model's code runs ("instance group ranking_0 of model ranking has
kind KIND_GPU but no GPUs are available"), so an export that may fall back to the CPU cannot ask
Triton for ``KIND_GPU``. ``KIND_MODEL`` loads (the Python model sees ``model_instance_kind``
"MODEL", device id 0) and leaves placement to the model: the stage places itself on GPU 0 (one
GPU per pod on EKS) or, without one, on the CPU, logged once and counted in
``cascade_device_fallback_total{stage}``.

**Load** (:func:`resolve_device`): a stage asked for the GPU (``device`` = ``gpu``, or a
``KIND_GPU`` instance) that finds no usable CUDA device through PyTorch raises
:class:`~cascade.errors.UnavailableError`, which fails the model load with that message, unless
the export allowed the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from cascade.errors import InvalidInputError, UnavailableError


Device = Literal["cpu", "gpu"]
DEVICES: tuple[str, ...] = ("cpu", "gpu")
GPU_CAPABLE = "gpu_capable"
DEVICE_PARAMETER = "device"
FALLBACK_PARAMETER = "allow_cpu_fallback"
FALLBACK_METRIC = "cascade_device_fallback_total"
HEADER = "# Device placement written by `cascade export --device {device}` (cascade/online/device.py)."


def check_device(device: str) -> Device:
    value = str(device).lower()
    if value not in DEVICES:
        raise InvalidInputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    return value  # type: ignore[return-value]


def _parse(text: str, source: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidInputError(f"{source}: not a valid Triton model config ({exc})") from exc
    return config


def is_gpu_capable(config) -> bool:
    """True when the ModelConfig carries ``gpu_capable: "true"``."""
    parameter = config.parameters.get(GPU_CAPABLE)
    return parameter is not None and parameter.string_value.strip().lower() == "true"


@dataclass(frozen=True)
class Placement:
    """What the rewrite decided for one model."""

    model: str
    gpu_capable: bool
    kind: str  # KIND_CPU / KIND_GPU / KIND_MODEL (the kind of every instance group)
    device: Device
    allow_cpu_fallback: bool


def rewrite_config(text: str, device: str, allow_cpu_fallback: bool = False,
                   source: str = "config.pbtxt") -> tuple[str, Placement]:
    """The config text for ``device`` and what was decided. A config without ``gpu_capable`` is
    returned unchanged (byte for byte, comments kept); a GPU-capable one is re-emitted from the
    protobuf, its leading comment block kept above a line naming the rewrite."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    device = check_device(device)
    config = _parse(text, source)
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    if not is_gpu_capable(config):
        kind = {kinds.Name(g.kind) for g in config.instance_group} or {"KIND_AUTO"}
        return text, Placement(config.name, False, ",".join(sorted(kind)), "cpu", False)
    if device == "cpu":
        kind, fallback = kinds.KIND_CPU, False
    else:
        kind, fallback = (kinds.KIND_MODEL if allow_cpu_fallback else kinds.KIND_GPU), bool(allow_cpu_fallback)
    if not config.instance_group:
        config.instance_group.add(count=1)
    for group in config.instance_group:
        group.kind = kind
        if kind != kinds.KIND_GPU:
            del group.gpus[:]  # gpus only mean something for KIND_GPU
    config.parameters[DEVICE_PARAMETER].string_value = device
    config.parameters[FALLBACK_PARAMETER].string_value = "true" if fallback else "false"
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    header.append(HEADER.format(device=device + (" --allow-cpu-fallback" if fallback else "")))
    body = text_format.MessageToString(config)
    return "\n".join(header) + "\n" + body, Placement(config.name, True, kinds.Name(kind), device, fallback)


def apply_device(model_repository: Path, device: str, allow_cpu_fallback: bool = False) -> list[Placement]:
    """Rewrite every ``<model>/config.pbtxt`` of ``model_repository`` for ``device`` (in place)."""
    device = check_device(device)
    if allow_cpu_fallback and device != "gpu":
        raise InvalidInputError("--allow-cpu-fallback only applies to --device gpu")
    placements = []
    for path in sorted(Path(model_repository).glob("*/config.pbtxt")):
        text = path.read_text()
        new, placement = rewrite_config(text, device, allow_cpu_fallback, source=str(path))
        if new != text:
            path.write_text(new)
        placements.append(placement)
    if device == "gpu" and not any(p.gpu_capable for p in placements):
        raise InvalidInputError(
            f"--device gpu: no model in {model_repository} has parameter {GPU_CAPABLE}=\"true\"; nothing would use the GPU"
        )
    return placements


# --- load time ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceDecision:
    """Where a stage runs: ``torch_device`` ("cuda:0" or "cpu") and whether it fell back."""

    requested: Device
    torch_device: str
    fell_back: bool
    reason: str = ""
    allow_cpu_fallback: bool = False  # what the export allowed (ONNX Runtime sessions follow it too)

    @property
    def on_gpu(self) -> bool:
        return self.torch_device.startswith("cuda")


def cuda_status(device_id: int = 0) -> tuple[bool, str]:
    """(usable, why not) for CUDA device ``device_id`` through PyTorch."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return False, f"PyTorch is not importable ({exc})"
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build)"
        return False, f"torch {torch.__version__} sees no CUDA device (CUDA build: {build})"
    count = torch.cuda.device_count()
    if device_id >= count:
        return False, f"CUDA device {device_id} requested but torch sees {count} device(s)"
    return True, ""


def resolve_device(stage: str, requested: str, allow_cpu_fallback: bool, device_id: int = 0,
                   probe: Callable[[int], tuple[bool, str]] = cuda_status) -> DeviceDecision:
    """Decide a stage's device at load. ``requested`` "gpu" without a usable GPU raises
    :class:`UnavailableError` unless ``allow_cpu_fallback``; the fallback is returned flagged
    (the caller logs it once and counts it)."""
    requested = check_device(requested)
    if requested == "cpu":
        return DeviceDecision("cpu", "cpu", False)
    usable, reason = probe(device_id)
    if usable:
        return DeviceDecision("gpu", f"cuda:{device_id}", False, allow_cpu_fallback=allow_cpu_fallback)
    if not allow_cpu_fallback:
        raise UnavailableError(
            f"{stage}: exported for the GPU (device=gpu) but no usable GPU: {reason}. Refusing to run on "
            f"the CPU silently; re-export with `cascade export --device cpu`, or with `--device gpu "
            f"--allow-cpu-fallback` to allow a logged, counted CPU fallback"
        )
    return DeviceDecision("gpu", "cpu", True, reason, allow_cpu_fallback=True)


def stage_device(parameter: Callable[[str, str], str], instance_kind: str) -> tuple[Device, bool]:
    """(requested device, allow_cpu_fallback) of a stage from its config parameters (``parameter``
    = ``StageContext.parameter``, which honours environment overrides) and Triton's instance kind:
    the ``device`` parameter wins; without it a ``KIND_GPU`` instance means gpu."""
    raw = (parameter(DEVICE_PARAMETER, "") or "").strip().lower()
    device = check_device(raw) if raw else ("gpu" if instance_kind.upper() == "GPU" else "cpu")
    fallback = (parameter(FALLBACK_PARAMETER, "false") or "false").strip().lower()
    if fallback not in ("true", "false"):
        raise InvalidInputError(f"parameter {FALLBACK_PARAMETER} must be 'true' or 'false', got {fallback!r}")
    return device, fallback == "true"


def place_stage(model, probe: Callable[[int], tuple[bool, str]] = cuda_status) -> DeviceDecision:
    """The device of a Triton stage model (a ``StageModel`` during ``build``): raises
    :class:`UnavailableError` (the load fails with that message) for a GPU stage without a GPU,
    or logs the allowed fallback once and counts it in ``cascade_device_fallback_total{stage}``."""
    context = model.context
    requested, fallback = stage_device(context.parameter, context.instance_kind)
    decision = resolve_device(model.stage_name, requested, fallback, context.device_id, probe)
    if decision.fell_back:
        model.logger.log_warn(
            f"{model.stage_name}: exported for the GPU but no usable GPU ({decision.reason}); running on the "
            f"CPU because the export allows it (allow_cpu_fallback)"
        )
        model.counter(FALLBACK_METRIC, "Stages running on the CPU although exported for the GPU").increment(1)
    return decision
