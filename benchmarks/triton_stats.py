"""Per-model timings from Triton's statistics API, as deltas between two snapshots.

``get_inference_statistics(as_json=True)`` gives cumulative counts and nanoseconds per model;
the difference over a measured phase divided by the requests in it is the per-request time of
each stage (queue, compute_input, compute_infer, compute_output), ``success`` being the whole
request inside that model. For the ensemble, ``success`` is the end-to-end server time.
"""

from __future__ import annotations

from typing import Any

PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output",
          "cache_hit", "cache_miss")


def snapshot(client: Any) -> dict[str, dict[str, Any]]:
    """``{model: {"inference_count", "execution_count", phase: (count, ns)}}`` (ready versions
    summed)."""
    stats = client.get_inference_statistics(model_name="", as_json=True)
    out: dict[str, dict[str, Any]] = {}
    for model in stats.get("model_stats", []):
        entry = out.setdefault(model["name"], {"inference_count": 0, "execution_count": 0,
                                               **{p: (0, 0) for p in PHASES}})
        entry["inference_count"] += int(model.get("inference_count", 0))
        entry["execution_count"] += int(model.get("execution_count", 0))
        infer = model.get("inference_stats", {})
        for phase in PHASES:
            count, ns = entry[phase]
            got = infer.get(phase, {})
            entry[phase] = (count + int(got.get("count", 0)), ns + int(got.get("ns", 0)))
    return out


def breakdown(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model with traffic in between: requests, executions, requests per execution and
    milliseconds per request of each phase."""
    rows = []
    for name, now in sorted(after.items()):
        prev = before.get(name, {"inference_count": 0, "execution_count": 0,
                                 **{p: (0, 0) for p in PHASES}})
        requests = now["success"][0] - prev["success"][0]
        if requests <= 0:
            continue
        executions = now["execution_count"] - prev["execution_count"]
        row: dict[str, Any] = {
            "model": name,
            "requests": requests,
            "executions": executions,
            "requests_per_execution": (now["inference_count"] - prev["inference_count"]) / executions
            if executions > 0 else None,
        }
        for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
            ns = now[phase][1] - prev[phase][1]
            row[f"{phase}_ms"] = ns / requests / 1e6
        row["cache_hits"] = now["cache_hit"][0] - prev["cache_hit"][0]
        row["cache_misses"] = now["cache_miss"][0] - prev["cache_miss"][0]
        rows.append(row)
    return rows
