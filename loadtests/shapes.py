"""Locust load shapes, selected with ``CASCADE_SHAPE=step|spike|none`` (read when the locustfile
is imported; ``cascade loadtest --shape`` sets it).

Both read Locust's common options: ``--users`` is the peak, ``--spawn-rate`` the ramp rate and
``--run-time`` the total duration; the test stops when it has passed. ``CASCADE_STEPS``
(default 4) sets the number of steps; ``CASCADE_SPIKE_RATIO`` (default 5) sets peak/baseline.
The arithmetic is in :mod:`loadtests.profiles`.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

from loadtests.profiles import Tick, normalize_shape, spike_tick, step_tick

DEFAULT_USERS = 20
DEFAULT_RUN_TIME_S = 60.0


class _CommonOptionsShape(LoadTestShape):
    abstract = True
    use_common_options = True

    def _options(self) -> tuple[int, float, float]:
        opts = getattr(self.runner.environment, "parsed_options", None) if self.runner else None
        peak = int(getattr(opts, "num_users", None) or DEFAULT_USERS)
        rate = float(getattr(opts, "spawn_rate", None) or peak)
        total = float(getattr(opts, "run_time", None) or DEFAULT_RUN_TIME_S)
        return peak, rate, total


class StepShape(_CommonOptionsShape):
    """Staircase up to ``--users`` in ``CASCADE_STEPS`` steps over ``--run-time``."""

    abstract = True  # the locustfile subclasses the selected shape (Locust runs every shape it sees)

    def tick(self) -> Tick:
        peak, rate, total = self._options()
        steps = max(1, int(os.environ.get("CASCADE_STEPS", "4")))
        return step_tick(self.get_run_time(), peak, steps, total, rate)


class SpikeShape(_CommonOptionsShape):
    """Baseline, a spike to ``--users`` in the middle fifth of ``--run-time``, baseline again."""

    abstract = True

    def tick(self) -> Tick:
        peak, rate, total = self._options()
        ratio = max(1.0, float(os.environ.get("CASCADE_SPIKE_RATIO", "5")))
        return spike_tick(self.get_run_time(), peak, ratio, total, rate)


def shape_class(name: str | None) -> type[LoadTestShape] | None:
    """The shape class for ``name`` ("none" gives None: plain --users/--spawn-rate/--run-time)."""
    return {"none": None, "step": StepShape, "spike": SpikeShape}[normalize_shape(name)]
