"""Read Locust's CSV output (``<prefix>_stats.csv``, ``<prefix>_stats_history.csv``), summarise
it and render throughput and p50/p95/p99 latency over time as a PNG.

Locust writes "N/A" for percentiles before the first response; those become NaN. History
percentiles are Locust's current-window values (about the last 10 s), not cumulative.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from cascade.errors import DataValidationError, NotFoundError

AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class RowSummary:
    """One row of ``_stats.csv`` (an endpoint or the aggregate)."""

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    max_ms: float


@dataclass(frozen=True)
class HistoryPoint:
    elapsed_s: float
    users: int
    rps: float
    failures_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def _num(value: str | None) -> float:
    if value is None or value.strip() in ("", "N/A"):
        return math.nan
    return float(value)


def _read(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise NotFoundError(f"Locust CSV {path} not found (did the run write --csv?)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataValidationError(f"{path}: missing column(s) {missing}; got {reader.fieldnames}")
        return list(reader)


def read_stats(prefix: str | Path) -> list[RowSummary]:
    """Rows of ``<prefix>_stats.csv``; the aggregate row last, as Locust writes it."""
    path = Path(f"{prefix}_stats.csv")
    cols = ("Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%",
            "Average Response Time", "Max Response Time")
    return [
        RowSummary(
            type=row["Type"], name=row["Name"], requests=int(row["Request Count"]),
            failures=int(row["Failure Count"]), rps=_num(row["Requests/s"]),
            p50_ms=_num(row["50%"]), p95_ms=_num(row["95%"]), p99_ms=_num(row["99%"]),
            avg_ms=_num(row["Average Response Time"]), max_ms=_num(row["Max Response Time"]),
        )
        for row in _read(path, cols)
    ]


def aggregate(rows: list[RowSummary]) -> RowSummary:
    for row in rows:
        if row.name == AGGREGATED:
            return row
    raise DataValidationError(f"no '{AGGREGATED}' row among {[r.name for r in rows]}")


def read_history(prefix: str | Path) -> list[HistoryPoint]:
    """Aggregated rows of ``<prefix>_stats_history.csv`` with seconds since the first row."""
    path = Path(f"{prefix}_stats_history.csv")
    cols = ("Timestamp", "User Count", "Name", "Requests/s", "Failures/s", "50%", "95%", "99%")
    rows = [r for r in _read(path, cols) if r["Name"] == AGGREGATED]
    if not rows:
        return []
    t0 = float(rows[0]["Timestamp"])
    return [
        HistoryPoint(
            elapsed_s=float(r["Timestamp"]) - t0, users=int(r["User Count"]),
            rps=_num(r["Requests/s"]), failures_per_s=_num(r["Failures/s"]),
            p50_ms=_num(r["50%"]), p95_ms=_num(r["95%"]), p99_ms=_num(r["99%"]),
        )
        for r in rows
    ]


def plot_history(points: list[HistoryPoint], png: Path, title: str = "recommend") -> Path:
    """Two panels sharing time: throughput (+ users), and p50/p95/p99 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise DataValidationError("stats history is empty: nothing to plot (run too short?)")
    t = [p.elapsed_s for p in points]
    fig, (ax_rps, ax_lat) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax_rps.plot(t, [p.rps for p in points], label="requests/s", color="tab:blue")
    ax_rps.plot(t, [p.failures_per_s for p in points], label="failures/s", color="tab:red")
    ax_rps.set_ylabel("throughput (req/s)")
    ax_users = ax_rps.twinx()
    ax_users.step(t, [p.users for p in points], where="post", color="tab:gray", alpha=0.6, label="users")
    ax_users.set_ylabel("users")
    lines = ax_rps.get_legend_handles_labels()
    extra = ax_users.get_legend_handles_labels()
    ax_rps.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper left")
    for attr, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        ax_lat.plot(t, [getattr(p, attr) for p in points], label=label)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("time since start (s)")
    ax_lat.legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def summary_dict(rows: list[RowSummary]) -> dict[str, object]:
    """JSON-friendly summary: the aggregate plus one entry per endpoint."""
    agg = aggregate(rows)
    return {"aggregate": asdict(agg),
            "endpoints": [asdict(r) for r in rows if r.name != AGGREGATED or r.type]}
