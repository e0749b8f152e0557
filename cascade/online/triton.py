"""The thin adapter every stage's ``model.py`` builds on (Triton Python backend).

A stage model subclasses :class:`StageModel`, builds its stage object from the installed project in
:meth:`StageModel.build`, and maps named numpy inputs to named numpy outputs in
:meth:`StageModel.run`. The adapter guarantees exactly one response per request: a
:class:`~cascade.errors.CascadeError` becomes a ``pb_utils.TritonError`` with its code
(INVALID_ARG / NOT_FOUND / UNAVAILABLE), anything else INTERNAL; both are logged through
``pb_utils.Logger`` and counted in ``cascade_stage_errors_total{stage=...}`` (a stage that returns
an error response still counts as a success in Triton's own ``nv_inference_request_success``).

Batching stages (``max_batch_size > 0`` with ``dynamic_batching`` in config.pbtxt) receive several
requests per ``execute``; each request's tensors keep their own shape with a leading batch dim of 1
(inputs are ragged, so Triton never concatenates them). A stage may override
:meth:`StageModel.run_batch` to compute the whole batch at once (one ONNX Runtime call, one Feast read);
if that raises or returns the wrong number of results, the batch is logged once (warning) and
counted in ``cascade_stage_batch_fallbacks_total{stage}``, and every request of the batch is retried
alone so one bad request fails only itself. The default :meth:`StageModel.run_batch` runs each
request once and keeps each failure as that request's result, so it never falls back (a request
is never run twice, and its counters are never incremented twice).
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cascade.errors import BundleMismatchError, CascadeError, triton_code_name

# the bundle tag (cascade/bundles/tagging.py; duplicated here so model start-up imports nothing more)
BUNDLE_PARAMETER = "bundle_id"
BUNDLE_OUTPUT = "cascade_bundle"
BUNDLE_INPUT_PREFIX = "cascade_bundle_from_"
BUNDLE_NAME_SEPARATOR = "__"

STAGE_ERRORS_METRIC = "cascade_stage_errors_total"
BATCH_FALLBACKS_METRIC = "cascade_stage_batch_fallbacks_total"
PHASE_METRIC = "cascade_phase_seconds"
# Seconds; a phase of one execution spans ~20 us (a gather) to tens of ms (a 1M-item retrieval).
PHASE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
PHASE_PENDING_LIMIT = 50_000  # observations buffered between flushes beyond this are dropped
METRIC_FLUSH_SECONDS = 0.2  # business-outcome counters reach /metrics at most this late


def _pb_utils():  # imported lazily: only exists inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils

    return pb_utils


class StageContext:
    """What a stage needs at load: its version folder, parameters and the export root."""

    def __init__(self, args: Mapping[str, str]) -> None:
        self.model_config: dict[str, Any] = json.loads(args["model_config"])
        self.name: str = args["model_name"]
        self.stage: str = self.name.split(BUNDLE_NAME_SEPARATOR, 1)[0]  # "<stage>__<bundle>" in a bundle server
        self.repository = Path(args["model_repository"])
        self.version_dir = self.repository / str(args["model_version"])
        self.instance_kind: str = args.get("model_instance_kind", "CPU")
        self.device_id: int = int(args.get("model_instance_device_id", 0) or 0)
        self.parameters: dict[str, str] = {
            key: value.get("string_value", "") for key, value in self.model_config.get("parameters", {}).items()
        }

    def parameter(self, key: str, default: str | None = None) -> str:
        env_key = f"CASCADE_{self.stage.upper()}_{key.upper()}"
        value = os.environ.get(env_key) or self.parameters.get(key) or default
        if value is None:
            raise CascadeError(f"model {self.name}: parameter {key!r} is not set in config.pbtxt")
        return value

    def export_path(self, key: str, default: str | None = None) -> Path:
        """A path parameter; relative paths are resolved against the export root."""
        from cascade.online.export_layout import ExportLayout

        value = Path(self.parameter(key, default))
        return value if value.is_absolute() else (self.export_root / value).resolve()

    @property
    def export_root(self) -> Path:
        """The export (bundle) this model belongs to: the ``export_root`` parameter that
        ``cascade rollout`` sets, else the export containing the model folder."""
        from cascade.online.export_layout import ExportLayout

        root = self.parameters.get("export_root")
        return Path(root) if root else ExportLayout.for_model(self.repository).root

    @property
    def export_layout(self):  # -> cascade.online.export_layout.ExportLayout
        from cascade.online.export_layout import ExportLayout

        return ExportLayout(self.export_root)

    @property
    def bundle_id(self) -> str:
        return self.parameters.get(BUNDLE_PARAMETER, "")

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

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        """Several requests' inputs -> their outputs, in order; a request's entry may be the
        exception (normally a CascadeError) that request gets. Default: :meth:`run` on each, once;
        a failure stays that request's result, so the batch never needs a re-run."""
        results: list[dict[str, np.ndarray] | Exception] = []
        for inputs in batch:
            try:
                results.append(self.run(inputs))
            except Exception as error:  # noqa: BLE001 - answered as this request's error in execute
                results.append(error)
        return results

    # --- Triton entry points ------------------------------------------------------------------
    def initialize(self, args: Mapping[str, str]) -> None:
        pb_utils = _pb_utils()
        self.logger = pb_utils.Logger
        self.context = StageContext(args)
        self.output_types = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in self.context.model_config["output"]
        }
        self._families: dict[str, Any] = {}
        self._flusher: MetricFlusher | None = None
        self._error_family = pb_utils.MetricFamily(
            name=STAGE_ERRORS_METRIC,
            description="Requests a cascade stage answered with an error (by stage and code)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._error_metrics: dict[str, Any] = {}
        self._fallback_family = pb_utils.MetricFamily(
            name=BATCH_FALLBACKS_METRIC,
            description="Batches whose vectorised run_batch failed and were retried request by request",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._fallback_metric: Any = None
        self._bundle_tag = _fingerprint(self.context.bundle_id)
        self._emits_bundle = BUNDLE_OUTPUT in self.output_types
        self.build(self.context)
        bundle = f", bundle {self.context.bundle_id}" if self.context.bundle_id else ""
        self.logger.log_info(f"{self.stage_name}: ready ({self.context.instance_kind}{bundle})")

    def counter(self, name: str, description: str, labels: Mapping[str, str] | None = None) -> "BufferedCounter":
        """A ``{stage=...}`` counter of a metric family kept alive for the model's lifetime (Triton
        rejects increments once the family object is garbage-collected). Increments are buffered
        and sent by a background thread every ``METRIC_FLUSH_SECONDS``: each ``Metric.increment``
        is a blocking round trip to the server process, which cost business_logic a third of its
        time when done per request (benchmarks/NOTES.md)."""
        pb_utils = _pb_utils()
        family = self._families.get(name)
        if family is None:
            family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
            self._families[name] = family
        if self._flusher is None:
            self._flusher = MetricFlusher(METRIC_FLUSH_SECONDS, self.logger)
        return self._flusher.add(BufferedCounter(family.Metric(labels={"stage": self.stage_name, **(labels or {})})))

    def phases(self, *names: str) -> "PhaseClock":
        """Histograms ``cascade_phase_seconds{model, phase}`` for the phases of a merged model: seconds
        per execution of each phase (a dynamic batch of B requests is one observation). Like the
        counters, observations are buffered and sent by the flusher thread (each ``observe`` is a
        blocking round trip to the server)."""
        if self.context.parameter("phase_metrics", "true").lower() == "false":  # A/B of their cost
            return PhaseClock({name: _NoHistogram() for name in names})
        pb_utils = _pb_utils()
        family = self._families.get(PHASE_METRIC)
        if family is None:
            family = pb_utils.MetricFamily(name=PHASE_METRIC, description="Seconds per execution of each phase of a cascade model",
                                           kind=pb_utils.MetricFamily.HISTOGRAM)
            self._families[PHASE_METRIC] = family
        if self._flusher is None:
            self._flusher = MetricFlusher(METRIC_FLUSH_SECONDS, self.logger)
        return PhaseClock({
            name: self._flusher.add(BufferedHistogram(
                family.Metric(labels={"model": self.context.stage, "phase": name}, buckets=list(PHASE_BUCKETS))))
            for name in names
        })

    def _count_error(self, code: str) -> None:
        metric = self._error_metrics.get(code)
        if metric is None:
            metric = self._error_family.Metric(labels={"stage": self.stage_name, "code": code})
            self._error_metrics[code] = metric
        metric.increment(1)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb_utils()
        batch = [self._inputs(request) for request in requests]
        # a request carrying another bundle's tensors gets its error here and is not computed
        results: list[dict[str, np.ndarray] | Exception | None] = [self._check_bundle(i) for i in batch]
        todo = [i for i, result in enumerate(results) if result is None]
        if len(todo) > 1:
            try:
                computed = list(self.run_batch([batch[i] for i in todo]))
                if len(computed) != len(todo):
                    raise ValueError(f"run_batch returned {len(computed)} results for {len(todo)} requests")
                for i, result in zip(todo, computed):
                    results[i] = result
            except Exception as error:  # noqa: BLE001 - None: each request is retried alone below
                self._count_fallback(len(todo), error)
        responses = []
        for inputs, result in zip(batch, results):
            try:
                if result is None:  # a single request, or a batch that failed as a whole
                    result = self.run(inputs)
                if isinstance(result, Exception):
                    raise result
                if self._emits_bundle:
                    result = {**result, BUNDLE_OUTPUT: np.array([[self._bundle_tag]], dtype=np.int64)}
                tensors = [
                    pb_utils.Tensor(name, np.asarray(value, dtype=self.output_types[name]))
                    for name, value in result.items()
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

    def _count_fallback(self, n_requests: int, error: Exception) -> None:
        """One warning and one count per batch that falls back to request-by-request."""
        self.logger.log_warn(
            f"{self.stage_name}: batch of {n_requests} requests failed as a whole "
            f"({type(error).__name__}: {error}); retrying each request alone"
        )
        if self._fallback_metric is None:
            self._fallback_metric = self._fallback_family.Metric(labels={"stage": self.stage_name})
        self._fallback_metric.increment(1)

    def _inputs(self, request: Any) -> dict[str, np.ndarray]:
        # One pass over request.inputs(): pb_utils.get_input_tensor_by_name rebuilds that list per
        # name (n^2 pybind objects for n inputs). Triton only passes inputs declared in config.pbtxt.
        return {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}

    def _check_bundle(self, inputs: dict[str, np.ndarray]) -> BundleMismatchError | None:
        """Pop the ``cascade_bundle_from_*`` inputs; an error when one names another bundle."""
        for name in [n for n in inputs if n.startswith(BUNDLE_INPUT_PREFIX)]:
            tag = inputs.pop(name)
            if tag.size != 1 or int(tag.reshape(-1)[0]) != self._bundle_tag:
                source = name[len(BUNDLE_INPUT_PREFIX):]
                got = tag.reshape(-1).tolist()
                return BundleMismatchError(
                    f"mixed bundles refused: tensors from {source} carry bundle fingerprint {got}, this "
                    f"stage ({self.context.name}) serves bundle {self.context.bundle_id!r} "
                    f"(fingerprint {self._bundle_tag})"
                )
        return None

    def _error_response(self, pb_utils, message: str, code: str):
        error = pb_utils.TritonError(f"{self.stage_name}: {message}", getattr(pb_utils.TritonError, code))
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def finalize(self) -> None:
        if self._flusher is not None:
            self._flusher.stop()
        self.logger.log_info(f"{self.stage_name}: unloaded")


def _fingerprint(bundle_id: str) -> int:
    """Same as cascade.bundles.tagging.fingerprint (signed int64 of sha256(bundle_id)[:8])."""
    import hashlib

    return int.from_bytes(hashlib.sha256(bundle_id.encode()).digest()[:8], "big", signed=True)


class BufferedCounter:
    """Counts locally; :class:`MetricFlusher` moves the pending amount to the Triton metric."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._pending = 0.0
        self._lock = threading.Lock()

    def increment(self, value: float) -> None:
        with self._lock:
            self._pending += value

    def flush(self) -> None:
        with self._lock:
            value, self._pending = self._pending, 0.0
        if value:
            self.metric.increment(value)


class BufferedHistogram:
    """Observations kept locally; :class:`MetricFlusher` sends them to the Triton histogram."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._pending: list[float] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def observe(self, value: float) -> None:
        with self._lock:
            if len(self._pending) < PHASE_PENDING_LIMIT:
                self._pending.append(value)
            else:
                self.dropped += 1

    def flush(self) -> None:
        with self._lock:
            values, self._pending = self._pending, []
        for value in values:
            self.metric.observe(value)


class _NoHistogram:
    def observe(self, value: float) -> None:
        pass


class PhaseClock:
    """Times consecutive phases of one execution: ``start()``, then ``lap(phase)`` after each."""

    def __init__(self, histograms: Mapping[str, Any]) -> None:
        self.histograms = dict(histograms)
        self._t = 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.histograms[phase].observe(now - self._t)
        self._t = now


class MetricFlusher:
    """A daemon thread that flushes its counters every ``interval_s`` and once more at stop."""

    def __init__(self, interval_s: float, logger: Any) -> None:
        self.counters: list[BufferedCounter | BufferedHistogram] = []
        self.logger = logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="cascade-metrics", daemon=True)
        self._thread.start()

    def add(self, counter: Any) -> Any:
        self.counters.append(counter)
        return counter

    def flush(self) -> None:
        for counter in list(self.counters):
            try:
                counter.flush()
            except Exception as error:  # noqa: BLE001 - a metric must never take the stage down
                self.logger.log_warn(f"metric flush failed: {error}")

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
