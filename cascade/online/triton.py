"""The thin adapter every stage's ``model.py`` builds on (Triton Python backend).

A stage model subclasses :class:`StageModel`, builds its stage object from the installed project in
:meth:`StageModel.build`, and maps named numpy inputs to named numpy outputs in
:meth:`StageModel.run`. The adapter guarantees exactly one response per request: a
:class:`~cascade.errors.CascadeError` becomes a ``pb_utils.TritonError`` with its code
(INVALID_ARG / NOT_FOUND / UNAVAILABLE), anything else INTERNAL; both are logged through
``pb_utils.Logger`` and counted in ``cascade_stage_errors_total{stage=...}`` (a stage that returns
an error response still counts as a success in Triton's own ``nv_inference_request_success``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cascade.errors import CascadeError, triton_code_name

STAGE_ERRORS_METRIC = "cascade_stage_errors_total"


def _pb_utils():  # imported lazily: only exists inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils

    return pb_utils


class StageContext:
    """What a stage needs at load: its version folder, parameters and the export root."""

    def __init__(self, args: Mapping[str, str]) -> None:
        self.model_config: dict[str, Any] = json.loads(args["model_config"])
        self.name: str = args["model_name"]
        self.repository = Path(args["model_repository"])
        self.version_dir = self.repository / str(args["model_version"])
        self.instance_kind: str = args.get("model_instance_kind", "CPU")
        self.device_id: int = int(args.get("model_instance_device_id", 0) or 0)
        self.parameters: dict[str, str] = {
            key: value.get("string_value", "") for key, value in self.model_config.get("parameters", {}).items()
        }

    def parameter(self, key: str, default: str | None = None) -> str:
        env_key = f"CASCADE_{self.name.upper()}_{key.upper()}"
        value = os.environ.get(env_key) or self.parameters.get(key) or default
        if value is None:
            raise CascadeError(f"model {self.name}: parameter {key!r} is not set in config.pbtxt")
        return value

    def export_path(self, key: str, default: str | None = None) -> Path:
        """A path parameter; relative paths are resolved against the export root."""
        from cascade.online.export_layout import ExportLayout

        value = Path(self.parameter(key, default))
        return value if value.is_absolute() else (ExportLayout.for_model(self.repository).root / value).resolve()

    def model_path(self, key: str, default: str | None = None) -> Path:
        """A path parameter; relative paths are resolved against this model's version folder."""
        value = Path(self.parameter(key, default))
        return value if value.is_absolute() else (self.version_dir / value).resolve()

    @property
    def device(self) -> str:
        return "gpu" if self.instance_kind.upper() == "GPU" else "cpu"


class StageModel(ABC):
    """Base class for ``TritonPythonModel`` of every stage."""

    stage_name: str = "stage"

    @abstractmethod
    def build(self, context: StageContext) -> None:
        """Create the stage object from the installed project and the export's artifacts."""

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named numpy inputs of one request -> named numpy outputs (raise CascadeError on bad input)."""

    # --- Triton entry points ------------------------------------------------------------------
    def initialize(self, args: Mapping[str, str]) -> None:
        pb_utils = _pb_utils()
        self.logger = pb_utils.Logger
        self.context = StageContext(args)
        self.input_names = [i["name"] for i in self.context.model_config["input"]]
        self.optional_inputs = {i["name"] for i in self.context.model_config["input"] if i.get("optional")}
        self.output_types = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in self.context.model_config["output"]
        }
        self._families: dict[str, Any] = {}
        self._error_family = pb_utils.MetricFamily(
            name=STAGE_ERRORS_METRIC,
            description="Requests a cascade stage answered with an error (by stage and code)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._error_metrics: dict[str, Any] = {}
        self.build(self.context)
        self.logger.log_info(f"{self.stage_name}: ready ({self.context.instance_kind})")

    def counter(self, name: str, description: str) -> Any:
        """A ``{stage=...}`` counter of a metric family kept alive for the model's lifetime (Triton
        rejects increments once the family object is garbage-collected)."""
        pb_utils = _pb_utils()
        family = self._families.get(name)
        if family is None:
            family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
            self._families[name] = family
        return family.Metric(labels={"stage": self.stage_name})

    def _count_error(self, code: str) -> None:
        metric = self._error_metrics.get(code)
        if metric is None:
            metric = self._error_family.Metric(labels={"stage": self.stage_name, "code": code})
            self._error_metrics[code] = metric
        metric.increment(1)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb_utils()
        responses = []
        for request in requests:
            try:
                inputs: dict[str, np.ndarray] = {}
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:
                        inputs[name] = tensor.as_numpy()
                outputs = self.run(inputs)
                tensors = [
                    pb_utils.Tensor(name, np.asarray(value, dtype=self.output_types[name]))
                    for name, value in outputs.items()
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except CascadeError as error:
                code = triton_code_name(error)
                self._count_error(code)
                responses.append(self._error_response(pb_utils, error.message, code))
            except Exception as error:  # noqa: BLE001 - every request gets exactly one response
                self._count_error("INTERNAL")
                self.logger.log_error(f"{self.stage_name}: {type(error).__name__}: {error}")
                responses.append(self._error_response(pb_utils, f"internal error: {error}", "INTERNAL"))
        return responses

    def _error_response(self, pb_utils, message: str, code: str):
        error = pb_utils.TritonError(f"{self.stage_name}: {message}", getattr(pb_utils.TritonError, code))
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def finalize(self) -> None:
        self.logger.log_info(f"{self.stage_name}: unloaded")
