"""Per-variant readings from the server's own Prometheus endpoint (the router's
``cascade_experiment_*`` metrics), differences between two scrapes, p99 from the histogram, and
the sample-ratio-mismatch check."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from cascade.errors import InvalidInputError, UnavailableError
from cascade.experiments.assign import VARIANTS

_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SRM_ALPHA = 0.001


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group("labels") or ""))
            samples.append((match.group("name"), labels, float(match.group("value"))))
    return samples


def scrape(metrics_url: str, timeout_s: float = 5.0) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
            return response.read().decode()
    except OSError as error:
        raise UnavailableError(f"metrics endpoint {metrics_url} does not answer: {error}") from None


def metrics_url_for(url: str, metrics_url: str | None) -> str:
    if metrics_url:
        if not metrics_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"--metrics-url must be http(s)://HOST:PORT/metrics, got {metrics_url!r}")
        return metrics_url
    return f"http://{url.rsplit(':', 1)[0]}:8002/metrics"


@dataclass
class VariantReading:
    """Cumulative counts of one variant (or their difference between two scrapes)."""

    requests: float = 0.0
    errors: float = 0.0  # server-side errors (every code but INVALID_ARG: a bad request is the client's)
    invalid: float = 0.0
    degraded: float = 0.0
    short: float = 0.0
    items: float = 0.0
    assignments: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    def minus(self, other: "VariantReading") -> "VariantReading":
        return VariantReading(**{k: getattr(self, k) - getattr(other, k) for k in
                                 ("requests", "errors", "invalid", "degraded", "short", "items", "assignments")},
                              buckets={le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()})

    def plus(self, other: "VariantReading") -> "VariantReading":
        return VariantReading(**{k: getattr(self, k) + getattr(other, k) for k in
                                 ("requests", "errors", "invalid", "degraded", "short", "items", "assignments")},
                              buckets={le: n + other.buckets.get(le, 0.0) for le, n in
                                       {**other.buckets, **self.buckets}.items()})

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def degraded_rate(self) -> float | None:
        answered = self.requests - self.errors - self.invalid
        return self.degraded / answered if answered > 0 else None

    def quantile(self, q: float) -> float | None:
        """Seconds at quantile ``q``, linear inside the histogram bucket (Prometheus' histogram_quantile)."""
        edges = sorted(self.buckets)
        total = self.buckets.get(math.inf, 0.0)
        if total <= 0:
            return None
        rank = q * total
        lower_edge, lower_count = 0.0, 0.0
        for le in edges:
            count = self.buckets[le]
            if count >= rank:
                if math.isinf(le):
                    return lower_edge  # beyond the last finite bucket: its bound is all we know
                span = count - lower_count
                return lower_edge + (le - lower_edge) * ((rank - lower_count) / span if span > 0 else 1.0)
            lower_edge, lower_count = le, count
        return lower_edge

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "buckets"}
        out.update(error_rate=self.error_rate, degraded_rate=self.degraded_rate,
                   p50_ms=_ms(self.quantile(0.5)), p99_ms=_ms(self.quantile(0.99)))
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


_COUNTERS = {
    "cascade_experiment_requests_total": "requests", "cascade_experiment_degraded_total": "degraded",
    "cascade_experiment_short_answers_total": "short", "cascade_experiment_items_total": "items",
    "cascade_experiment_assignments_total": "assignments",
}


def readings(text: str, experiment: str) -> dict[str, VariantReading]:
    """Per-variant cumulative readings of ``experiment`` from a scrape."""
    out = {v: VariantReading() for v in VARIANTS}
    for name, labels, value in parse(text):
        if labels.get("experiment") != experiment or labels.get("variant") not in out:
            continue
        reading = out[labels["variant"]]
        if name in _COUNTERS:
            setattr(reading, _COUNTERS[name], getattr(reading, _COUNTERS[name]) + value)
        elif name == "cascade_experiment_errors_total":
            if labels.get("code") == "INVALID_ARG":
                reading.invalid += value
            else:
                reading.errors += value
        elif name == "cascade_experiment_latency_seconds_bucket":
            le = math.inf if labels.get("le") in ("+Inf", "inf") else float(labels["le"])
            reading.buckets[le] = reading.buckets.get(le, 0.0) + value
    return out


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    p_value: float
    expected_share: float
    observed_share: float | None
    n: int

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA


def srm(control: float, treatment: float, share: float) -> SrmResult | None:
    """Chi-square goodness of fit of (control, treatment) counts to (1 - share, share), 1 degree of
    freedom: p = erfc(sqrt(chi2 / 2)) (exact for one degree of freedom, no scipy needed). None when
    there is nothing to test (no counts, or a share of 0 or 1)."""
    n = control + treatment
    if n <= 0 or not 0.0 < share < 1.0:
        return None
    expected = (n * (1.0 - share), n * share)
    chi2 = sum((o - e) ** 2 / e for o, e in zip((control, treatment), expected))
    return SrmResult(chi2, math.erfc(math.sqrt(chi2 / 2.0)), share, treatment / n, int(n))
