"""Canary guardrails: a validated SPEC and its verdict on one step's per-variant readings.

SPEC: comma-separated ``NAME<=VALUE`` terms, e.g. ``error_rate<=0.01,p99_ratio<=1.5``:

- ``error_rate``: the treatment's server-error rate minus the control's (fraction of requests
  answered with an error other than INVALID_ARG) must stay <= VALUE;
- ``p99_ratio``: the treatment's p99 latency (router histogram) / the control's <= VALUE;
- ``p50_ratio``: the same for the median (steadier than p99 on a few hundred requests);
- ``degraded_rate``: the treatment's share of degraded answers minus the control's <= VALUE;
- ``min_requests``: a step is judged only once the treatment answered at least VALUE requests
  in it (default 20); a step that never gets them fails (no verdict = no promotion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cascade.errors import InvalidInputError
from cascade.experiments.readings import VariantReading

GUARDS = ("error_rate", "p99_ratio", "p50_ratio", "degraded_rate")
DEFAULT_SPEC = "error_rate<=0.01,p99_ratio<=1.5,degraded_rate<=0.05,min_requests=20"


@dataclass(frozen=True)
class GuardSpec:
    limits: dict[str, float]
    min_requests: int = 20

    @classmethod
    def parse(cls, spec: str) -> "GuardSpec":
        limits: dict[str, float] = {}
        min_requests = 20
        allowed = f"{', '.join(f'{g}<=X' for g in GUARDS)}, min_requests=N"
        for term in [t.strip() for t in (spec or "").split(",") if t.strip()]:
            name, op, value = _split(term)
            if name == "min_requests" and op in ("=", ">="):
                min_requests = int(_number(term, value, integer=True))
                continue
            if name not in GUARDS or op != "<=":
                raise InvalidInputError(f"--guard term {term!r}: expected one of {allowed}")
            if name in limits:
                raise InvalidInputError(f"--guard names {name} twice")
            limits[name] = _number(term, value)
        if not limits:
            raise InvalidInputError(f"--guard {spec!r} sets no guard; expected terms like {allowed} (comma-separated)")
        return cls(limits, min_requests)

    def judge(self, control: VariantReading, treatment: VariantReading) -> tuple[bool, dict[str, dict]]:
        """(all hold, {guard: {value, limit, ok}}). A guard without data on either side holds
        only when the treatment side is clean (no errors / no degraded answers)."""
        results = {}
        for name, limit in self.limits.items():
            value = _value(name, control, treatment)
            ok = value is not None and value <= limit
            if value is None:  # e.g. no control traffic: judge the treatment alone
                value = _alone(name, treatment)
                ok = value is not None and value <= limit
            results[name] = {"value": value, "limit": limit, "ok": ok}
        return all(r["ok"] for r in results.values()), results


def _split(term: str) -> tuple[str, str, str]:
    for op in ("<=", ">=", "="):
        if op in term:
            name, value = term.split(op, 1)
            return name.strip(), op, value.strip()
    raise InvalidInputError(f"--guard term {term!r}: expected NAME<=VALUE, e.g. error_rate<=0.01")


def _number(term: str, text: str, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise InvalidInputError(f"--guard term {term!r}: {text!r} is not {'an integer' if integer else 'a number'}") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"--guard term {term!r}: expected a finite number >= 0")
    return value


def _value(name: str, control: VariantReading, treatment: VariantReading) -> float | None:
    if name in ("p99_ratio", "p50_ratio"):
        q = 0.99 if name == "p99_ratio" else 0.5
        c, t = control.quantile(q), treatment.quantile(q)
        return None if c is None or t is None or c <= 0 else t / c
    attribute = "error_rate" if name == "error_rate" else "degraded_rate"
    c, t = getattr(control, attribute), getattr(treatment, attribute)
    return None if c is None or t is None else t - c


def _alone(name: str, treatment: VariantReading) -> float | None:
    if name in ("p99_ratio", "p50_ratio"):
        return None
    return getattr(treatment, "error_rate" if name == "error_rate" else "degraded_rate")
