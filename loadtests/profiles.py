"""Pure load-profile arithmetic behind the Locust shapes in :mod:`loadtests.shapes` (kept free
of Locust imports: importing locust monkey-patches the whole process with gevent).

- step: ``steps`` equal steps up to ``peak`` users, each lasting total/steps.
- spike: baseline (peak / ratio, at least 1) for the first 40 % of the run, ``peak`` for the
  next 20 % (spawned at once), baseline again to the end.
Each tick returns (users, spawn rate), or None once the total duration has passed.
"""

from __future__ import annotations

import math

SHAPES = ("none", "step", "spike")
SPIKE_START, SPIKE_END = 0.4, 0.6

Tick = tuple[int, float] | None


def normalize_shape(name: str | None) -> str:
    """Lower-cased shape name; ValueError naming CASCADE_SHAPE for anything else."""
    key = (name or "none").strip().lower()
    if key not in SHAPES:
        raise ValueError(f"CASCADE_SHAPE: expected one of {', '.join(SHAPES)}, got {name!r}")
    return key


def step_tick(elapsed_s: float, peak: int, steps: int, total_s: float, spawn_rate: float) -> Tick:
    """Users and spawn rate at ``elapsed_s`` for the step shape."""
    if elapsed_s >= total_s:
        return None
    step = min(steps - 1, int(elapsed_s / (total_s / steps)))
    return max(1, math.ceil(peak * (step + 1) / steps)), spawn_rate


def spike_baseline(peak: int, ratio: float) -> int:
    return max(1, int(peak / ratio))


def spike_tick(elapsed_s: float, peak: int, ratio: float, total_s: float, spawn_rate: float) -> Tick:
    """Users and spawn rate at ``elapsed_s`` for the spike shape."""
    if elapsed_s >= total_s:
        return None
    rate = float(max(peak, spawn_rate))  # the spike arrives at once
    if SPIKE_START * total_s <= elapsed_s < SPIKE_END * total_s:
        return peak, rate
    return spike_baseline(peak, ratio), rate
