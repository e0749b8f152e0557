"""The experiment router: while an experiment runs, ``recommend`` is this Python (BLS) model.

Per request: choose the variant (the optional ``variant`` input, validated, else
:func:`cascade.experiments.assign.assign` on ``user_id``), forward every other input unchanged to
that variant's pinned ensemble ``recommend__<bundle>`` (one BLS call), and answer its outputs plus
``variant``. An answer's error (code and message) is passed through as is. A request without a
usable ``user_id`` goes to the control, whose entry stage names the problem.

Per-variant metrics (labels experiment, variant, bundle; buffered, sent every 0.2 s) are listed in
:data:`METRICS`. With the parameter ``exposure_log`` set, every answered request with a valid
``user_id`` is recorded in the exposure log (cascade/experiments/exposures.py) off the request path;
rows written and dropped are counted in :data:`EXPOSURE_METRICS`. Only this module's imports load
in the stub (numpy, cascade.errors, cascade.online.triton; pyarrow only with an exposure log).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import numpy as np

from cascade.errors import CascadeError, InvalidInputError, triton_code_name
from cascade.experiments.assign import CONTROL, VARIANTS, assign
from cascade.experiments.state import Experiment
from cascade.online.triton import METRIC_FLUSH_SECONDS, BufferedCounter, BufferedHistogram, MetricFlusher

VARIANT = "variant"
_INPUT_ERROR = re.compile(r"(^|: )input '[a-z_]+' (is required|must)")
FORWARDED_OUTPUTS = ("item_ids", "scores", "model_version", "degraded", "seed_used")
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
METRICS = {
    "requests": ("cascade_experiment_requests_total", "Requests answered through the experiment router, by variant"),
    "errors": ("cascade_experiment_errors_total", "Requests of a variant answered with an error (label code)"),
    "latency": ("cascade_experiment_latency_seconds", "Seconds from the router receiving a request to the variant's answer"),
    "degraded": ("cascade_experiment_degraded_total", "Answers flagged degraded (cold start or feature store fallback)"),
    "short": ("cascade_experiment_short_answers_total", "Answers with fewer items than top_k"),
    "items": ("cascade_experiment_items_total", "Items returned (a business counter read from the outputs)"),
    "assignments": ("cascade_experiment_assignments_total", "Requests assigned by the user hash (not forced by the variant input): the SRM counts"),
}
EXPOSURE_METRICS = {
    "written": ("cascade_experiment_exposures_total", "Exposures (answered requests) written to the exposure log"),
    "dropped": ("cascade_experiment_exposures_dropped_total",
                "Exposures not logged (label reason: queue_full, write_failed, unavailable); the requests were answered"),
}


def _pb_utils():
    import triton_python_backend_utils as pb_utils

    return pb_utils


def choose_variant(experiment: Experiment, user_id: np.ndarray | None, forced: np.ndarray | None) -> tuple[str, bool]:
    """(variant, assigned by hash). Raises InvalidInputError for a bad ``variant`` input."""
    if forced is not None:
        values = forced.reshape(-1)
        value = values[0] if values.size == 1 else None
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if text not in VARIANTS:
            shown = values.tolist()[:3] if values.size != 1 else text
            raise InvalidInputError(f"input 'variant' must be one BYTES value of {list(VARIANTS)} (shape [1]), got {shown!r}")
        return text, False
    if user_id is None or user_id.size != 1 or not np.issubdtype(user_id.dtype, np.integer):
        return CONTROL, False  # the control's entry stage answers INVALID_ARG naming user_id
    return assign(int(user_id.reshape(-1)[0]), experiment.salt, experiment.share), True


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        pb_utils = _pb_utils()
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        experiment = Experiment.from_parameters(params)
        if experiment is None:
            raise CascadeError("the experiment router needs the parameters experiment, salt, share, control_bundle, treatment_bundle")
        self.experiment = experiment
        self.models = {v: f"recommend__{experiment.bundle_of(v)}" for v in VARIANTS}
        self.variant_tensors = {v: np.array([v.encode()], dtype=object) for v in VARIANTS}
        self._families = {key: pb_utils.MetricFamily(name=name, description=text, kind=(
            pb_utils.MetricFamily.HISTOGRAM if key == "latency" else pb_utils.MetricFamily.COUNTER))
            for key, (name, text) in METRICS.items()}
        self._share_family = pb_utils.MetricFamily(name="cascade_experiment_share", kind=pb_utils.MetricFamily.GAUGE,
                                                   description="Share of users the experiment routes to the treatment")
        self._share = self._share_family.Metric(labels={"experiment": experiment.name})
        self._share.set(experiment.share)
        self._flusher = MetricFlusher(METRIC_FLUSH_SECONDS, self.logger)
        self._metrics: dict[tuple[str, str, str], Any] = {}
        self._exposure_counters: dict[str, Any] = {}
        self._exposure_families = {key: pb_utils.MetricFamily(name=name, description=text, kind=pb_utils.MetricFamily.COUNTER)
                                   for key, (name, text) in EXPOSURE_METRICS.items()}
        self.exposures = self._open_exposures(experiment)
        self.logger.log_info(f"experiment router {experiment.name}: share {experiment.share} -> {self.models}; "
                             f"exposure log {experiment.exposure_log or 'off'}")

    def _open_exposures(self, experiment: Experiment) -> Any:
        """The exposure writer, None without ``exposure_log``, False when it cannot be opened (every
        exposure is then counted as dropped, reason unavailable; the router serves regardless)."""
        if not experiment.exposure_log:
            return None
        from cascade.experiments.exposures import Exposure, ExposureWriter

        self._Exposure = Exposure  # the row type, imported once here rather than per request
        self._exposure_counter("written")  # made here, not first in the writer thread
        try:
            return ExposureWriter(experiment.exposure_log, flush_seconds=experiment.exposure_flush_seconds,
                                  on_written=lambda n: self._exposure_counter("written").increment(n),
                                  on_dropped=lambda reason, n: self._exposure_counter("dropped", reason).increment(n),
                                  log_warning=self.logger.log_warn)
        except Exception as error:  # noqa: BLE001 - the log must never take the router down
            self.logger.log_warn(f"exposure log {experiment.exposure_log} unavailable, exposures are dropped: {error}")
            return False

    def _exposure_counter(self, key: str, reason: str = "") -> Any:
        found = self._exposure_counters.get(key + reason)
        if found is None:
            labels = {"experiment": self.experiment.name, **({"reason": reason} if reason else {})}
            found = self._flusher.add(BufferedCounter(self._exposure_families[key].Metric(labels=labels)))
            self._exposure_counters[key + reason] = found
        return found

    def _record_exposure(self, request_ms: int, user_id: np.ndarray | None, variant: str, hashed: bool,
                         item_ids: np.ndarray) -> None:
        if self.exposures is None or user_id is None or user_id.size != 1 or not np.issubdtype(user_id.dtype, np.integer):
            return
        if self.exposures is False:
            self._exposure_counter("dropped", "unavailable").increment(1)
            return
        self.exposures.submit(self._Exposure(request_ms, int(user_id.reshape(-1)[0]), self.experiment.name, variant,
                                       self.experiment.bundle_of(variant), not hashed,
                                       np.array(item_ids, dtype=np.int64).reshape(-1)))

    def _metric(self, key: str, variant: str, code: str = "") -> Any:
        found = self._metrics.get((key, variant, code))
        if found is None:
            labels = {"experiment": self.experiment.name, "variant": variant}
            if key != "assignments":
                labels["bundle"] = self.experiment.bundle_of(variant)
            if code:
                labels["code"] = code
            if key == "latency":
                found = BufferedHistogram(self._families[key].Metric(labels=labels, buckets=list(LATENCY_BUCKETS)))
            else:
                found = BufferedCounter(self._families[key].Metric(labels=labels))
            self._metrics[(key, variant, code)] = self._flusher.add(found)
        return found

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._route(request) for request in requests]

    def _route(self, request: Any) -> Any:
        pb_utils = _pb_utils()
        started = time.perf_counter()
        request_ms = time.time_ns() // 1_000_000
        forward, user_id, forced, top_k = [], None, None, None
        for tensor in request.inputs():
            name = tensor.name()
            if name == VARIANT:
                forced = tensor.as_numpy()
                continue
            if name == "user_id":
                user_id = tensor.as_numpy()
            elif name == "top_k":
                top_k = tensor.as_numpy()
            forward.append(tensor)
        try:
            variant, hashed = choose_variant(self.experiment, user_id, forced)
        except CascadeError as error:
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(
                f"recommend: {error.message}", getattr(pb_utils.TritonError, triton_code_name(error))))
        if hashed:
            self._metric("assignments", variant).increment(1)
        answer = pb_utils.InferenceRequest(model_name=self.models[variant], inputs=forward,
                                           requested_output_names=list(FORWARDED_OUTPUTS)).exec()
        self._metric("latency", variant).observe(time.perf_counter() - started)
        self._metric("requests", variant).increment(1)
        if answer.has_error():
            failure = answer.error()
            code = bls_error_code(pb_utils, failure)
            self._metric("errors", variant, _code_name(pb_utils, code)).increment(1)
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(failure.message(), code))
        outputs = {t.name(): t for t in answer.output_tensors()}
        item_ids = outputs["item_ids"].as_numpy()
        items = item_ids.size
        self._record_exposure(request_ms, user_id, variant, hashed, item_ids)
        self._metric("items", variant).increment(items)
        if bool(outputs["degraded"].as_numpy().reshape(-1)[0]):
            self._metric("degraded", variant).increment(1)
        if top_k is not None and top_k.size == 1 and items < int(top_k.reshape(-1)[0]):
            self._metric("short", variant).increment(1)
        tensors = [outputs[name] for name in FORWARDED_OUTPUTS]
        tensors.append(pb_utils.Tensor(VARIANT, self.variant_tensors[variant]))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        if self.exposures:
            self.exposures.close()
        self._flusher.stop()


def bls_error_code(pb_utils: Any, error: Any) -> Any:
    """The code of a BLS answer's error. Measured on the bundled tritonserver 2.51: a BLS response
    carries every error as INTERNAL (the ensemble's own INVALID_ARG is lost), so an error whose
    message names a request input the way cascade/online/request.py does ("input 'top_k' must ...")
    is given back its INVALID_ARG: a client's bad request stays a 400 and no server error."""
    code_of = getattr(error, "code", None)
    code = code_of() if callable(code_of) else pb_utils.TritonError.INTERNAL
    if code == pb_utils.TritonError.INTERNAL and _INPUT_ERROR.search(error.message() or ""):
        return pb_utils.TritonError.INVALID_ARG
    return code


def _code_name(pb_utils: Any, code: Any) -> str:
    for name in ("INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "UNSUPPORTED", "ALREADY_EXISTS", "CANCELLED", "INTERNAL", "UNKNOWN"):
        if getattr(pb_utils.TritonError, name, object()) == code:
            return name
    return "INTERNAL"
