"""StageModel (cascade/online/triton.py), the adapter every stage's model.py builds on, driven by
a small stand-in for ``triton_python_backend_utils`` (the real module only exists inside the
Triton Python-backend stub; the integration tests run the real one). Checks the batching contract:
one response per request, in order; a batch whose vectorised call fails is retried request by
request so only the bad request fails; buffered business counters reach the metric."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.online.triton import PHASE_BUCKETS, BufferedCounter, BufferedHistogram, MetricFlusher, StageModel


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: Any = None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


class _Error:
    INVALID_ARG, NOT_FOUND, UNAVAILABLE, INTERNAL = "INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "INTERNAL"

    def __init__(self, message: str, code: str) -> None:
        self.message, self.code = message, code


class _Metric:
    def __init__(self, labels: dict[str, str], buckets: list[float] | None = None) -> None:
        self.labels, self.value, self.buckets, self.observed = labels, 0.0, buckets, []

    def increment(self, value: float) -> None:
        self.value += value

    def observe(self, value: float) -> None:
        self.observed.append(value)


class _Family:
    COUNTER, HISTOGRAM = "counter", "histogram"
    families: list["_Family"] = []

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.metrics: list[_Metric] = []
        _Family.families.append(self)

    def Metric(self, labels: dict[str, str], buckets: list[float] | None = None) -> _Metric:  # noqa: N802
        if (buckets is not None) != (self.kind == self.HISTOGRAM):  # the real API: buckets iff histogram
            raise ValueError("buckets are required for (and only for) a histogram")
        metric = _Metric(labels, buckets)
        self.metrics.append(metric)
        return metric


class _Logger:
    lines: list[str] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(message)

    log_warn = log_error = log_info


class _Request:
    def __init__(self, **inputs: np.ndarray) -> None:
        self._inputs = [_Tensor(k, v) for k, v in inputs.items()]

    def inputs(self) -> list[_Tensor]:
        return self._inputs


@pytest.fixture
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor, module.InferenceResponse, module.TritonError = _Tensor, _Response, _Error
    module.MetricFamily, module.Logger = _Family, _Logger
    module.triton_string_to_numpy = {"TYPE_INT64": np.int64, "TYPE_FP32": np.float32}.__getitem__
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


class Doubler(StageModel):
    """x [1, n] -> y = 2x as FP32; negative values are bad input; run_batch is vectorised."""

    stage_name = "doubler"

    def build(self, context) -> None:
        self.batches: list[int] = []
        self.seen = self.counter("cascade_test_values_total", "values doubled")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        if (x < 0).any():
            raise InvalidInputError("input 'x' must be >= 0")
        self.seen.increment(x.size)
        return {"y": 2 * x}

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        self.batches.append(len(batch))
        xs = [inputs["x"] for inputs in batch]
        if any((x < 0).any() for x in xs):
            raise InvalidInputError("a bad request in the batch")
        ys = 2 * np.concatenate(xs, axis=1)
        sizes = np.cumsum([x.shape[1] for x in xs])[:-1]
        self.seen.increment(sum(x.size for x in xs))
        return [{"y": y} for y in np.split(ys, sizes, axis=1)]


def _model(pb_utils) -> Doubler:
    model = Doubler()
    config = {"input": [{"name": "x", "data_type": "TYPE_INT64"}],
              "output": [{"name": "y", "data_type": "TYPE_FP32"}]}
    model.initialize({"model_config": json.dumps(config), "model_name": "doubler",
                      "model_repository": "/nonexistent/doubler", "model_version": "1"})
    return model


def test_a_batch_gets_one_response_per_request_in_order(pb_utils) -> None:
    model = _model(pb_utils)
    requests = [_Request(x=np.array([[1, 2]])), _Request(x=np.array([[3]])), _Request(x=np.array([[4, 5, 6]]))]
    responses = model.execute(requests)
    assert model.batches == [3]  # one vectorised call
    assert [r.error for r in responses] == [None, None, None]
    assert [r.outputs["y"].tolist() for r in responses] == [[[2, 4]], [[6]], [[8, 10, 12]]]
    assert all(r.outputs["y"].dtype == np.float32 for r in responses)  # config's output type
    model.finalize()
    assert model.seen.metric.value == 6  # flushed at finalize


def test_a_bad_request_in_a_batch_fails_alone(pb_utils) -> None:
    model = _model(pb_utils)
    requests = [_Request(x=np.array([[1]])), _Request(x=np.array([[-1]])), _Request(x=np.array([[7]]))]
    responses = model.execute(requests)
    assert [r.error is None for r in responses] == [True, False, True]
    assert responses[1].error.code == "INVALID_ARG" and "input 'x'" in responses[1].error.message
    assert responses[0].outputs["y"].tolist() == [[2]] and responses[2].outputs["y"].tolist() == [[14]]
    errors = model._error_family.metrics
    assert [(m.labels["code"], m.value) for m in errors] == [("INVALID_ARG", 1)]
    model.finalize()


def test_run_batch_may_answer_a_request_with_its_error(pb_utils) -> None:
    class PerRequestErrors(Doubler):
        def run_batch(self, batch):
            return [InvalidInputError("input 'x': odd one out") if i == 1 else {"y": 2 * b["x"]}
                    for i, b in enumerate(batch)]

    model = PerRequestErrors()
    model.initialize({"model_config": json.dumps({"input": [{"name": "x", "data_type": "TYPE_INT64"}],
                                                  "output": [{"name": "y", "data_type": "TYPE_FP32"}]}),
                      "model_name": "doubler", "model_repository": "/nonexistent/doubler", "model_version": "1"})
    responses = model.execute([_Request(x=np.array([[1]])), _Request(x=np.array([[2]])), _Request(x=np.array([[3]]))])
    assert [r.error is None for r in responses] == [True, False, True]
    assert "odd one out" in responses[1].error.message
    model.finalize()


def test_buffered_counter_sums_until_flushed() -> None:
    metric = _Metric({})
    counter = BufferedCounter(metric)
    for value in (1, 2, 3.5):
        counter.increment(value)
    assert metric.value == 0
    counter.flush()
    counter.flush()  # nothing pending: no second send
    assert metric.value == 6.5


def test_flusher_thread_sends_pending_counts_and_stops() -> None:
    import time

    metric = _Metric({})
    flusher = MetricFlusher(0.01, _Logger)
    counter = flusher.add(BufferedCounter(metric))
    counter.increment(4)
    deadline = time.monotonic() + 5
    while metric.value != 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metric.value == 4
    counter.increment(1)
    flusher.stop()
    assert metric.value == 5 and not flusher._thread.is_alive()


def _config() -> dict[str, str]:
    return {"model_config": json.dumps({"input": [{"name": "x", "data_type": "TYPE_INT64"}],
                                        "output": [{"name": "y", "data_type": "TYPE_FP32"}]}),
            "model_name": "doubler", "model_repository": "/nonexistent/doubler", "model_version": "1"}


def _fallbacks(model: StageModel) -> list[tuple[str, float]]:
    family = model._fallback_family
    return [(m.labels["stage"], m.value) for m in family.metrics]


def test_a_failed_vectorised_batch_is_logged_once_and_counted(pb_utils) -> None:
    model = _model(pb_utils)
    _Logger.lines.clear()
    requests = [_Request(x=np.array([[1]])), _Request(x=np.array([[-1]])), _Request(x=np.array([[7]]))]
    model.execute(requests)
    warnings = [line for line in _Logger.lines if "batch" in line and "doubler" in line]
    assert len(warnings) == 1 and "3 requests" in warnings[0] and "a bad request in the batch" in warnings[0]
    assert _fallbacks(model) == [("doubler", 1)]
    model.execute([_Request(x=np.array([[1]])), _Request(x=np.array([[2]]))])  # a good batch: no fallback
    assert _fallbacks(model) == [("doubler", 1)]
    model.finalize()


def test_a_wrong_length_batch_result_is_a_visible_fallback(pb_utils) -> None:
    class Short(Doubler):
        def run_batch(self, batch):
            return [{"y": 2 * b["x"]} for b in batch[:-1]]  # one result missing

    model = Short()
    model.initialize(_config())
    _Logger.lines.clear()
    responses = model.execute([_Request(x=np.array([[1]])), _Request(x=np.array([[2]]))])
    assert [r.outputs["y"].tolist() for r in responses] == [[[2]], [[4]]]  # answered alone
    assert _fallbacks(model) == [("doubler", 1)]
    assert any("1 results for 2 requests" in line for line in _Logger.lines)
    model.finalize()


def test_the_default_run_batch_does_not_run_a_request_twice(pb_utils) -> None:
    class PerRequest(StageModel):
        """No run_batch override: counts every value it doubles; negative values are bad input."""

        stage_name = "per_request"

        def build(self, context) -> None:
            self.calls = 0
            self.seen = self.counter("cascade_test_values_total", "values doubled")

        def run(self, inputs):
            self.calls += 1
            x = inputs["x"]
            self.seen.increment(x.size)
            if (x < 0).any():
                raise InvalidInputError("input 'x' must be >= 0")
            return {"y": 2 * x}

    model = PerRequest()
    model.initialize(_config())
    responses = model.execute([_Request(x=np.array([[1]])), _Request(x=np.array([[-1]])), _Request(x=np.array([[3]]))])
    assert [r.error is None for r in responses] == [True, False, True]
    assert model.calls == 3  # each request ran once (before: the batch was re-run, 5 calls)
    model.finalize()
    assert model.seen.metric.value == 3  # no double counting
    assert _fallbacks(model) == []  # a per-request error is not a batch fallback


def _tagged_model(pb_utils, bundle: str) -> Doubler:
    model = Doubler()
    config = {"input": [{"name": "x", "data_type": "TYPE_INT64"},
                        {"name": "cascade_bundle_from_up", "data_type": "TYPE_INT64"}],
              "output": [{"name": "y", "data_type": "TYPE_FP32"}, {"name": "cascade_bundle", "data_type": "TYPE_INT64"}],
              "parameters": {"bundle_id": {"string_value": bundle}}}
    model.initialize({"model_config": json.dumps(config), "model_name": f"doubler__{bundle}",
                      "model_repository": "/nonexistent/doubler", "model_version": "1"})
    return model


def test_a_stage_refuses_tensors_of_another_bundle_and_tags_its_outputs(pb_utils) -> None:
    from cascade.bundles.tagging import fingerprint

    model = _tagged_model(pb_utils, "A")
    own, other = fingerprint("A"), fingerprint("B")
    requests = [_Request(x=np.array([[1]]), cascade_bundle_from_up=np.array([[own]])),
                _Request(x=np.array([[2]]), cascade_bundle_from_up=np.array([[other]])),
                _Request(x=np.array([[3]]), cascade_bundle_from_up=np.array([[own]]))]
    responses = model.execute(requests)
    assert [r.error is None for r in responses] == [True, False, True]
    assert responses[1].error.code == "INTERNAL"
    assert "mixed bundles refused" in responses[1].error.message and "'A'" in responses[1].error.message
    assert model.batches == [2]  # the two matching requests still share one vectorised call
    assert responses[0].outputs["y"].tolist() == [[2]] and responses[2].outputs["y"].tolist() == [[6]]
    assert responses[0].outputs["cascade_bundle"].tolist() == [[own]]
    model.finalize()


def test_phases_are_histograms_per_model_and_phase_sent_by_the_flusher(pb_utils) -> None:
    class TwoPhases(Doubler):
        def build(self, context) -> None:
            super().build(context)
            self.clock = self.phases("double", "check")

        def run(self, inputs):
            self.clock.start()
            out = super().run(inputs)
            self.clock.lap("double")
            self.clock.lap("check")
            return out

    model = TwoPhases()
    model.initialize({"model_config": json.dumps({"input": [{"name": "x", "data_type": "TYPE_INT64"}],
                                                  "output": [{"name": "y", "data_type": "TYPE_FP32"}]}),
                      "model_name": "doubler", "model_repository": "/nonexistent/doubler", "model_version": "1"})
    model.execute([_Request(x=np.array([[1]]))])
    model.execute([_Request(x=np.array([[2]]))])
    model.finalize()
    family = next(f for f in reversed(_Family.families) if f.name == "cascade_phase_seconds")
    assert family.kind == _Family.HISTOGRAM
    by_phase = {m.labels["phase"]: m for m in family.metrics}
    assert set(by_phase) == {"double", "check"} and {m.labels["model"] for m in family.metrics} == {"doubler"}
    for metric in by_phase.values():
        assert len(metric.observed) == 2 and all(0 <= v < 1 for v in metric.observed)
        assert metric.buckets == list(PHASE_BUCKETS)


def test_buffered_histogram_keeps_every_value_until_flushed() -> None:
    metric = _Metric({}, buckets=[1.0])
    histogram = BufferedHistogram(metric)
    for value in (0.1, 0.2, 0.3):
        histogram.observe(value)
    assert metric.observed == []
    histogram.flush()
    histogram.flush()
    assert metric.observed == [0.1, 0.2, 0.3]
