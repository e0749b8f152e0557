"""Export-time config transform: the bundle id travels with the stage tensors.

Over whatever steps the ``recommend`` ensemble lists (stages may be merged or reshaped), every
stage model gets

- ``parameters { key: "bundle_id" }`` (also on the ensemble),
- an output ``cascade_bundle`` INT64 [1]: the fingerprint of its bundle id, and
- for every other step whose outputs it consumes, an input ``cascade_bundle_from_<step>``
  mapped to that step's ``cascade_bundle``.

:class:`cascade.online.triton.StageModel` compares each ``cascade_bundle_from_*`` input with its
own fingerprint and answers an error instead of computing when they differ, so a request can
never chain stages of two bundles, whatever the ensemble says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cascade.online.triton import BUNDLE_INPUT_PREFIX, BUNDLE_OUTPUT, BUNDLE_PARAMETER
from cascade.online.triton import _fingerprint as fingerprint  # one definition, used online and here

ENSEMBLE = "recommend"


def model_config_pb2() -> Any:
    from tritonclient.grpc import model_config_pb2 as pb

    return pb


def read_config(path: Path) -> Any:
    """Parse a config.pbtxt into Triton's ModelConfig protobuf (raises on any unknown field)."""
    from google.protobuf import text_format

    return text_format.Parse(Path(path).read_text(), model_config_pb2().ModelConfig())


def write_config(path: Path, config: Any, header: str = "") -> None:
    from google.protobuf import text_format

    Path(path).write_text(header + text_format.MessageToString(config))


def ensemble_steps(ensemble: Any) -> list[str]:
    return [step.model_name for step in ensemble.ensemble_scheduling.step]


def producers(ensemble: Any) -> dict[str, str]:
    """ensemble tensor -> the step model that writes it."""
    return {tensor: step.model_name for step in ensemble.ensemble_scheduling.step
            for tensor in step.output_map.values()}


def apply_bundle_tags(model_repository: Path, bundle_id: str) -> list[str]:
    """Wire the bundle tag through the ensemble of ``model_repository`` (an export's) in place;
    returns the stage names."""
    pb = model_config_pb2()
    repo = Path(model_repository)
    ensemble = read_config(repo / ENSEMBLE / "config.pbtxt")
    writer = producers(ensemble)
    consumed: set[str] = set()
    stage_inputs: dict[str, list[str]] = {}
    for step in ensemble.ensemble_scheduling.step:
        sources = sorted({writer[t] for t in step.input_map.values() if t in writer} - {step.model_name})
        stage_inputs[step.model_name] = sources
        for source in sources:
            step.input_map[BUNDLE_INPUT_PREFIX + source] = f"{BUNDLE_OUTPUT}.{source}"
        consumed.update(sources)
    for step in ensemble.ensemble_scheduling.step:
        if step.model_name in consumed:
            step.output_map[BUNDLE_OUTPUT] = f"{BUNDLE_OUTPUT}.{step.model_name}"
    ensemble.parameters[BUNDLE_PARAMETER].string_value = bundle_id
    header = "# Written by `cascade export`: the bundle tag is wired through every step (cascade/bundles/tagging.py)\n"
    write_config(repo / ENSEMBLE / "config.pbtxt", ensemble, header)

    for stage, sources in stage_inputs.items():
        path = repo / stage / "config.pbtxt"
        config = read_config(path)
        names = {i.name for i in config.input} | {o.name for o in config.output}
        if BUNDLE_OUTPUT not in names:
            config.output.append(pb.ModelOutput(name=BUNDLE_OUTPUT, data_type=pb.TYPE_INT64, dims=[1]))
        for source in sources:
            if BUNDLE_INPUT_PREFIX + source not in names:
                config.input.append(pb.ModelInput(name=BUNDLE_INPUT_PREFIX + source, data_type=pb.TYPE_INT64, dims=[1]))
        config.parameters[BUNDLE_PARAMETER].string_value = bundle_id
        write_config(path, config, header)
    return list(stage_inputs)


def tag_inputs(config_path: Path) -> list[tuple[str, int]]:
    """(input name, fingerprint) of the bundle-tag inputs of a stage config (for its warm-up sample)."""
    config = read_config(config_path)
    bundle_id = config.parameters[BUNDLE_PARAMETER].string_value if BUNDLE_PARAMETER in config.parameters else ""
    return [(i.name, fingerprint(bundle_id)) for i in config.input if i.name.startswith(BUNDLE_INPUT_PREFIX)]
