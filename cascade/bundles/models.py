"""How a bundle becomes Triton models in one running server (explicit model control).

Scheme (verified on the bundled tritonserver 2.51, see tests/integration/test_bundles.py):
each stage of bundle ``B`` is its own Triton model ``<stage>__B`` in the server's model
repository (a folder the server and ``cascade rollout`` share): the export's config.pbtxt,
renamed, plus ``export_root``, and a copy of the model folder's small files (``1/model.py``,
warm-up data); the artifacts stay in the export. The ensemble steps name those models, so

- ``recommend__B`` is the ensemble pinned to B (smoke tests, canaries, debugging), and
- ``recommend`` is re-pinned to a bundle by ONE load with a config override (the switch, ~20 ms;
  its config.pbtxt is rewritten first, so a restarted server comes back on the live bundle).

File overrides of the load API (no shared folder) were tried and rejected: an ensemble whose
steps were loaded that way fails to load ("failed to poll from model repository").

A bundle per model *name* rather than per model *version*: Triton's config (warm-up shapes,
parameters, instance groups, device) belongs to a model, not a version, and two bundles of one
dataset differ in exactly those; per-name models also load and unload independently.
The live state is in the server: ``recommend``'s parameters ``bundle_id``, ``previous_bundle``,
``live_since``; every stage model's ``bundle_id`` and ``export_root``.

Models of the export outside the ensemble (``interactions``, issue 15) keep their own name: clients
call them by it, and ``interactions`` must run as ONE instance (read-modify-write of a user's row).
They follow the live bundle: loaded (reloaded) from it right after each switch and rollback,
with the bundle's ``export_root`` and ``bundle_id`` (``BundleModels.extras``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cascade.bundles.tagging import BUNDLE_PARAMETER, ENSEMBLE, read_config
from cascade.errors import BundleVerificationError
from cascade.online.triton import BUNDLE_NAME_SEPARATOR

INFO_MODEL = "cascade_bundle_info"
LIVE_SINCE = "live_since"
PREVIOUS = "previous_bundle"
EXPORT_ROOT = "export_root"


def model_name(stage: str, bundle_id: str) -> str:
    return f"{stage}{BUNDLE_NAME_SEPARATOR}{bundle_id}"


def split_name(name: str) -> tuple[str, str] | None:
    """``<stage>__<bundle>`` -> (stage, bundle); None for other names."""
    stage, sep, bundle = name.partition(BUNDLE_NAME_SEPARATOR)
    return (stage, bundle) if sep and stage and bundle else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def config_json(config: Any) -> str:
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))


def write_folder(repository: Path, folder: ModelFolder) -> Path:
    """Write (or rewrite) a model folder; config.pbtxt is replaced in one rename, last."""
    from google.protobuf import text_format

    target = Path(repository) / folder.name
    for rel, data in folder.files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    _precompile(target)
    tmp = target / ".config.pbtxt.tmp"
    tmp.write_text(text_format.MessageToString(folder.config))
    tmp.replace(target / "config.pbtxt")
    return target


def _precompile(model_dir: Path) -> None:
    """Write model.py's bytecode now: the Python-backend stub would write it at load (it ignores
    PYTHONDONTWRITEBYTECODE), and Triton takes a folder whose files changed for a modified model
    and reloads it, with every stage of an ensemble, at the next ensemble load."""
    import py_compile

    for source in model_dir.glob("*/*.py"):
        try:
            py_compile.compile(str(source), doraise=True)
        except py_compile.PyCompileError:
            pass  # the load reports it, naming the file


@dataclass
class ModelFolder:
    """A model folder to write into the server's repository: name, config and small files."""

    name: str
    config: Any  # ModelConfig
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes


@dataclass
class BundleModels:
    """The Triton models of one bundle, built from its export folder."""

    bundle_id: str
    export_root: Path
    stages: list[ModelFolder]
    ensemble: Any  # ModelConfig of the export's `recommend`, steps renamed to this bundle's models
    extras: list[ModelFolder] = field(default_factory=list)  # models outside the ensemble, own names

    @classmethod
    def from_export(cls, export_root: Path, bundle_id: str) -> "BundleModels":
        root = Path(export_root).resolve()
        repo = root / "model_repository"
        ensemble = read_config(repo / ENSEMBLE / "config.pbtxt")
        tagged = ensemble.parameters[BUNDLE_PARAMETER].string_value if BUNDLE_PARAMETER in ensemble.parameters else ""
        if tagged != bundle_id:
            raise BundleVerificationError(
                f"{repo / ENSEMBLE / 'config.pbtxt'}: bundle_id parameter {tagged!r} does not match the "
                f"manifest's {bundle_id!r} (re-export with `cascade export`)"
            )
        stages, steps = [], set()
        for step in ensemble.ensemble_scheduling.step:
            stage = step.model_name
            steps.add(stage)
            stages.append(_stage_folder(repo / stage, model_name(stage, bundle_id), root))
            step.model_name = model_name(stage, bundle_id)
            step.model_version = -1
        ensemble.parameters[EXPORT_ROOT].string_value = str(root)
        extras = []
        for model_dir in sorted(p for p in repo.iterdir() if (p / "config.pbtxt").is_file()):
            if model_dir.name == ENSEMBLE or model_dir.name in steps:
                continue
            if read_config(model_dir / "config.pbtxt").platform == "ensemble":
                continue  # another ensemble would name this bundle's steps: not served in bundle mode
            folder = _stage_folder(model_dir, model_dir.name, root)
            folder.config.parameters[BUNDLE_PARAMETER].string_value = bundle_id
            extras.append(folder)
        return cls(bundle_id, root, stages, ensemble, extras)

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    @property
    def pinned_name(self) -> str:
        return model_name(ENSEMBLE, self.bundle_id)

    def ensemble_folder(self, name: str, **parameters: str) -> ModelFolder:
        from tritonclient.grpc import model_config_pb2 as pb

        config = pb.ModelConfig()
        config.CopyFrom(self.ensemble)
        config.name = name
        for key, value in parameters.items():
            config.parameters[key].string_value = value
        return ModelFolder(name, config, {"1/.keep": b""})


def _stage_folder(model_dir: Path, name: str, export_root: Path) -> ModelFolder:
    if not (model_dir / "config.pbtxt").is_file():
        raise BundleVerificationError(f"{model_dir}/config.pbtxt is missing (the ensemble lists {model_dir.name})")
    config = read_config(model_dir / "config.pbtxt")
    config.name = name
    config.parameters[EXPORT_ROOT].string_value = str(export_root)
    files = {
        p.relative_to(model_dir).as_posix(): p.read_bytes()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name != "config.pbtxt" and "__pycache__" not in p.parts
    }
    return ModelFolder(name, config, files)


INFO_MODEL_SOURCE = '''"""cascade_bundle_info: sets the gauge cascade_bundle_info{bundle} = 1 for the live bundle (loaded
by `cascade rollout` with the bundle as a parameter; the previous instance's gauge goes with it)."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        bundle = json.loads(args["model_config"])["parameters"]["bundle"]["string_value"]
        self.bundle = bundle
        self.metric = None
        if bundle:  # "" until the first rollout
            self.family = pb_utils.MetricFamily(
                name="cascade_bundle_info", description="The bundle this server answers `recommend` with (value 1)",
                kind=pb_utils.MetricFamily.GAUGE)
            self.metric = self.family.Metric(labels={"bundle": bundle})
            self.metric.set(1.0)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("bundle", np.array([self.bundle.encode()], dtype=object))])
                for _ in requests]

    def finalize(self):
        if self.metric is not None:
            self.metric.set(0.0)
'''


def info_model_folder(bundle_id: str, repository: Path) -> ModelFolder:
    """The gauge model; its parameters also tell `cascade rollout` where the repository is."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2 as pb

    config = {
        "name": INFO_MODEL, "backend": "python", "max_batch_size": 0,
        "input": [{"name": "ping", "data_type": "TYPE_BOOL", "dims": [1], "optional": True}],
        "output": [{"name": "bundle", "data_type": "TYPE_STRING", "dims": [1]}],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": {"bundle": {"string_value": bundle_id}, "repository": {"string_value": str(repository)}},
    }
    return ModelFolder(INFO_MODEL, json_format.ParseDict(config, pb.ModelConfig()),
                       {"1/model.py": INFO_MODEL_SOURCE.encode()})
