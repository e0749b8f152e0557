"""Latency summaries (milliseconds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize(latencies_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    """count, mean, p50, p90, p95, p99, max of ``latencies_ms`` (NaN for an empty list)."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        nan = float("nan")
        return {"count": 0, "mean_ms": nan, "p50_ms": nan, "p90_ms": nan, "p95_ms": nan,
                "p99_ms": nan, "max_ms": nan}
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return {"count": int(values.size), "mean_ms": float(values.mean()), "p50_ms": float(p50),
            "p90_ms": float(p90), "p95_ms": float(p95), "p99_ms": float(p99),
            "max_ms": float(values.max())}


def find_knee(curve: Sequence[dict[str, float]], p99_limit_ms: float = 50.0) -> dict[str, object]:
    """From a throughput curve (dicts with concurrency, rps, p99_ms; rising concurrency): the
    first level whose p99 exceeds ``p99_limit_ms`` and the best throughput that stayed within."""
    within = [row for row in curve if row["p99_ms"] <= p99_limit_ms]
    crossed = next((row for row in curve if row["p99_ms"] > p99_limit_ms), None)
    best = max(within, key=lambda row: row["rps"]) if within else None
    return {
        "p99_limit_ms": p99_limit_ms,
        "first_concurrency_over_limit": crossed["concurrency"] if crossed else None,
        "max_rps_within_limit": best["rps"] if best else None,
        "concurrency_at_max_rps_within_limit": best["concurrency"] if best else None,
    }
