"""Step and spike load profiles (pure arithmetic; importing locust here would gevent-patch the
whole pytest process, so the Locust classes are exercised by tests/integration/test_locust.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.profiles import normalize_shape, spike_tick, step_tick


def test_step_climbs_in_equal_steps_and_stops() -> None:
    users = [step_tick(t, peak=20, steps=4, total_s=40, spawn_rate=5)[0] for t in (0, 9.9, 10, 25, 39.9)]
    assert users == [5, 5, 10, 15, 20]
    assert step_tick(40, 20, 4, 40, 5) is None


def test_step_never_below_one_user() -> None:
    assert step_tick(0, peak=2, steps=10, total_s=10, spawn_rate=1)[0] == 1


def test_spike_baseline_peak_baseline() -> None:
    total = 100
    assert spike_tick(10, 20, 5, total, 2)[0] == 4
    assert spike_tick(45, 20, 5, total, 2) == (20, 20.0)  # spawned at once
    assert spike_tick(70, 20, 5, total, 2)[0] == 4
    assert spike_tick(100, 20, 5, total, 2) is None
    assert spike_tick(10, 3, 5, total, 2)[0] == 1


def test_shape_names() -> None:
    assert normalize_shape(None) == "none"
    assert normalize_shape(" Step ") == "step"
    assert normalize_shape("spike") == "spike"
    with pytest.raises(ValueError, match="CASCADE_SHAPE"):
        normalize_shape("ramp")


def test_helpers_do_not_import_locust() -> None:
    """The modules that the CLI, benchmark and unit tests import must not pull in locust."""
    code = ("import sys; import loadtests.profiles, loadtests.report, loadtests.sampling, "
            "loadtests.wire, cascade.loadtest_cli; print('locust' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "False"
