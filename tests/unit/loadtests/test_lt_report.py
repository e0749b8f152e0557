"""Parsing of Locust's CSV output, the PNG, and the benchmark helpers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.latency import find_knee, summarize
from benchmarks.triton_stats import breakdown
from cascade.errors import DataValidationError, NotFoundError
from loadtests.report import aggregate, plot_history, read_history, read_stats, summary_dict

STATS = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
grpc,recommend,7868,0,3,4.2,0.9,70.9,203.0,1122.2,0.0,3,4,5,6,7,9,14,17,25,71,71
,Aggregated,7868,2,3,4.2,0.9,70.9,203.0,1122.2,0.0,3,4,5,6,7,9,14,17,25,71,71
"""
HISTORY = """Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size
100,0,,Aggregated,0.000000,0.000000,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0.0,0,0,0
101,8,,Aggregated,500.0,0.0,7,8,9,9,10,11,21,36,71,71,71,613,0,7,7.2,0.6,70.9,274.6
103,8,,Aggregated,900.0,1.0,6,8,9,9,10,12,21,30,71,71,71,2613,1,7,7.2,0.6,70.9,274.6
"""


def _write(tmp_path: Path) -> Path:
    prefix = tmp_path / "run"
    Path(f"{prefix}_stats.csv").write_text(STATS)
    Path(f"{prefix}_stats_history.csv").write_text(HISTORY)
    return prefix


def test_read_stats_and_aggregate(tmp_path: Path) -> None:
    rows = read_stats(_write(tmp_path))
    agg = aggregate(rows)
    assert (agg.requests, agg.failures, agg.p50_ms, agg.p95_ms, agg.p99_ms) == (7868, 2, 3, 9, 17)
    assert agg.rps == pytest.approx(1122.2)
    assert summary_dict(rows)["aggregate"]["requests"] == 7868


def test_read_history_handles_na_and_time(tmp_path: Path) -> None:
    points = read_history(_write(tmp_path))
    assert [p.elapsed_s for p in points] == [0, 1, 3]
    assert math.isnan(points[0].p99_ms)
    assert points[2].rps == 900.0 and points[2].p95_ms == 12


def test_plot_writes_png(tmp_path: Path) -> None:
    png = plot_history(read_history(_write(tmp_path)), tmp_path / "out" / "run.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_files_and_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nothing_stats.csv"):
        read_stats(tmp_path / "nothing")
    Path(f"{tmp_path / 'bad'}_stats.csv").write_text("Type,Name\n")
    with pytest.raises(DataValidationError, match="Request Count"):
        read_stats(tmp_path / "bad")


def test_summarize_and_knee() -> None:
    s = summarize(np.arange(1, 101, dtype=float))
    assert s["count"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["max_ms"] == 100
    assert math.isnan(summarize([])["p99_ms"])
    curve = [{"concurrency": 1, "rps": 100, "p99_ms": 5}, {"concurrency": 4, "rps": 350, "p99_ms": 20},
             {"concurrency": 8, "rps": 360, "p99_ms": 60}, {"concurrency": 16, "rps": 340, "p99_ms": 120}]
    knee = find_knee(curve, 50)
    assert knee["first_concurrency_over_limit"] == 8
    assert (knee["max_rps_within_limit"], knee["concurrency_at_max_rps_within_limit"]) == (350, 4)
    assert find_knee(curve[:2], 50)["first_concurrency_over_limit"] is None


def test_stage_breakdown_divides_deltas_by_requests() -> None:
    zero = {p: (0, 0) for p in ("success", "queue", "compute_input", "compute_infer",
                                "compute_output", "cache_hit", "cache_miss")}
    before = {"ranking": {"inference_count": 10, "execution_count": 10, **zero}}
    after = {
        "ranking": {"inference_count": 110, "execution_count": 60, **zero,
                    "success": (100, 300_000_000), "queue": (100, 50_000_000),
                    "compute_infer": (50, 200_000_000)},
        "idle": {"inference_count": 0, "execution_count": 0, **zero},
    }
    rows = breakdown(before, after)
    assert [r["model"] for r in rows] == ["ranking"]
    row = rows[0]
    assert row["requests"] == 100 and row["requests_per_execution"] == 2.0
    assert row["success_ms"] == pytest.approx(3.0) and row["queue_ms"] == pytest.approx(0.5)
    assert row["compute_infer_ms"] == pytest.approx(2.0)
