"""Guard SPEC parsing and verdicts, Prometheus readings, canary steps, the router's variant choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.experiments.canary import parse_steps
from cascade.experiments.guards import GuardSpec
from cascade.experiments.readings import VariantReading, readings
from cascade.experiments.router import choose_variant
from cascade.experiments.state import Experiment

SCRAPE = """# HELP cascade_experiment_requests_total x
# TYPE cascade_experiment_requests_total counter
cascade_experiment_requests_total{bundle="A",experiment="e",variant="control"} 100
cascade_experiment_requests_total{bundle="B",experiment="e",variant="treatment"} 50
cascade_experiment_requests_total{bundle="B",experiment="other",variant="treatment"} 999
cascade_experiment_errors_total{bundle="B",code="INTERNAL",experiment="e",variant="treatment"} 10
cascade_experiment_errors_total{bundle="A",code="INVALID_ARG",experiment="e",variant="control"} 4
cascade_experiment_degraded_total{bundle="A",experiment="e",variant="control"} 6
cascade_experiment_assignments_total{experiment="e",variant="control"} 90
cascade_experiment_latency_seconds_bucket{bundle="A",experiment="e",variant="control",le="0.01"} 50
cascade_experiment_latency_seconds_bucket{bundle="A",experiment="e",variant="control",le="0.02"} 100
cascade_experiment_latency_seconds_bucket{bundle="A",experiment="e",variant="control",le="+Inf"} 100
"""


def test_readings_parse_per_variant() -> None:
    got = readings(SCRAPE, "e")
    control, treatment = got["control"], got["treatment"]
    assert (control.requests, control.invalid, control.errors, control.assignments) == (100, 4, 0, 90)
    assert (treatment.requests, treatment.errors) == (50, 10)
    assert treatment.error_rate == 0.2
    assert control.degraded_rate == pytest.approx(6 / 96)
    assert control.quantile(0.5) == pytest.approx(0.01)
    assert control.quantile(0.99) == pytest.approx(0.01 + 0.01 * 49 / 50)
    assert treatment.quantile(0.99) is None
    window = control.minus(VariantReading(requests=40, buckets={0.01: 20, 0.02: 40, math.inf: 40}))
    assert window.requests == 60 and window.buckets[math.inf] == 60


def test_guard_spec_validation_names_the_term() -> None:
    spec = GuardSpec.parse("error_rate<=0.01, p99_ratio<=1.5,min_requests=50")
    assert spec.limits == {"error_rate": 0.01, "p99_ratio": 1.5} and spec.min_requests == 50
    for bad, message in (("latency<=3", "expected one of error_rate<=X"), ("error_rate<=abc", "is not a number"),
                         ("p99_ratio>=2", "expected one of"), ("", "sets no guard"), ("error_rate", "expected NAME<=VALUE"),
                         ("error_rate<=0.1,error_rate<=0.2", "twice"), ("error_rate<=-1", ">= 0"),
                         ("error_rate<=0.1,min_requests=2.5", "not an integer")):
        with pytest.raises(InvalidInputError, match=message):
            GuardSpec.parse(bad)


def test_guard_verdicts() -> None:
    spec = GuardSpec.parse("error_rate<=0.01,p99_ratio<=1.5,degraded_rate<=0.05")
    fast = {0.01: 99.0, 0.02: 100.0, math.inf: 100.0}
    slow = {0.01: 0.0, 0.05: 99.0, 0.1: 100.0, math.inf: 100.0}
    control = VariantReading(requests=100, buckets=fast)
    ok, results = spec.judge(control, VariantReading(requests=100, buckets=dict(fast)))
    assert ok and results["p99_ratio"]["value"] == pytest.approx(1.0)
    ok, results = spec.judge(control, VariantReading(requests=100, errors=20, buckets=dict(fast)))
    assert not ok and not results["error_rate"]["ok"] and results["error_rate"]["value"] == pytest.approx(0.2)
    ok, results = spec.judge(control, VariantReading(requests=100, buckets=slow))
    assert not ok and results["p99_ratio"]["value"] > 3
    ok, _ = spec.judge(VariantReading(), VariantReading(requests=100, buckets=dict(fast)))  # no control: p99 cannot be judged
    assert not ok


def test_canary_steps() -> None:
    assert parse_steps("5,25,50,100") == [0.05, 0.25, 0.5, 1.0]
    for bad in ("", "50,25", "0,50", "5,150", "a,b", "5,5"):
        with pytest.raises(InvalidInputError, match="--canary"):
            parse_steps(bad)


def test_router_variant_choice() -> None:
    experiment = Experiment("e", "s", 0.5, "A", "B", "t")
    assert choose_variant(experiment, None, np.array([b"treatment"], dtype=object)) == ("treatment", False)
    with pytest.raises(InvalidInputError, match=r"input 'variant' must be one BYTES value of \['control', 'treatment'\]"):
        choose_variant(experiment, None, np.array([b"blue"], dtype=object))
    with pytest.raises(InvalidInputError, match="variant"):
        choose_variant(experiment, None, np.array([b"control", b"control"], dtype=object))
    from cascade.experiments.assign import assign

    assert choose_variant(experiment, np.array([[42]], dtype=np.int64), None) == (assign(42, "s", 0.5), True)
    assert choose_variant(experiment, np.array([1.5], dtype=np.float32), None) == ("control", False)  # the control names the error


def test_experiment_state_round_trips_and_validates() -> None:
    experiment = Experiment("ab-1", "salt", 0.25, "A", "B", "2026-01-01T00:00:00+00:00")
    assert Experiment.from_parameters({**experiment.parameters(), "bundle_id": "A"}) == experiment
    assert Experiment.from_parameters({"bundle_id": "A"}) is None
    with pytest.raises(InvalidInputError, match="share must be a fraction"):
        Experiment("x", "s", 1.5, "A", "B", "")
    with pytest.raises(InvalidInputError, match="is the control"):
        Experiment("x", "s", 0.5, "A", "A", "")
    with pytest.raises(InvalidInputError, match="salt must be"):
        Experiment("x", "bad salt!", 0.5, "A", "B", "")


def test_router_instances_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.errors import InvalidInputError
    from cascade.experiments.control import DEFAULT_ROUTER_INSTANCES, default_router_instances

    monkeypatch.delenv("CASCADE_ROUTER_INSTANCES", raising=False)
    assert default_router_instances() == DEFAULT_ROUTER_INSTANCES == 16
    monkeypatch.setenv("CASCADE_ROUTER_INSTANCES", "3")
    assert default_router_instances() == 3
    monkeypatch.setenv("CASCADE_ROUTER_INSTANCES", "many")
    with pytest.raises(InvalidInputError, match="CASCADE_ROUTER_INSTANCES must be a whole number"):
        default_router_instances()
