"""Bounded Locust runs against the real ``recommend`` ensemble (fixture ``recommend_server`` from
tests/integration/conftest.py): zero failures and a non-trivial number of requests, over gRPC and
HTTP, with known and unknown users (unknown users must come back degraded=True, which the
Locust users check). Latency is not asserted here; see benchmarks/bench_serving.py.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"

pytestmark = [
    pytest.mark.integration,
    # the 30 s load runs once, on SQLite: the Redis export is covered by test_recommend/test_faults
    pytest.mark.parametrize("recommend_server", ["sqlite"], indirect=True),
]


def _http_base(url: str) -> str:
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def _run_locust(server: Any, tmp_path: Path, *, users: int, run_time_s: int, classes: list[str],
                shape: str = "none", extra: list[str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, str]]]:
    ids = tmp_path / "known_user_ids.txt"
    ids.write_text("\n".join(str(int(u)) for u in server.known_user_ids) + "\n")
    prefix = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{run_time_s}s",
        "--stop-timeout", "5", "--host", _http_base(server.http_url), "--grpc-url", server.grpc_url,
        "--user-ids", str(ids), "--csv", str(prefix), "--html", f"{prefix}.html",
        *(extra or []), *classes,
    ]
    env = dict(os.environ, CASCADE_SHAPE=shape)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=run_time_s + 90)
    stats_file = Path(f"{prefix}_stats.csv")
    assert stats_file.is_file(), f"locust wrote no stats (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    with stats_file.open(newline="") as handle:
        rows = {f"{r['Type']}:{r['Name']}": r for r in csv.DictReader(handle)}
    return proc, rows


def _counters(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(r"cascade-loadtest counters: (\{.*\})", proc.stdout + proc.stderr)
    assert match, "the locustfile did not log its request counters"
    return {k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", match.group(1))}


def test_locust_grpc_and_http_zero_failures(recommend_server: Any, tmp_path: Path) -> None:
    proc, rows = _run_locust(
        recommend_server, tmp_path, users=20, run_time_s=30,
        classes=["GrpcRecommendUser", "HttpRecommendUser"],
        extra=["--unknown-share", "0.2", "--exclude-share", "0.2", "--explore-share", "0.2"],
    )
    failures = Path(f"{tmp_path / 'run'}_failures.csv").read_text()
    assert proc.returncode == 0, f"locust exit {proc.returncode}; failures:\n{failures}\n{proc.stderr[-3000:]}"
    total = rows[":Aggregated"]
    assert int(total["Failure Count"]) == 0, failures
    assert int(rows["grpc:recommend"]["Request Count"]) >= 200
    assert int(rows["POST:recommend"]["Request Count"]) >= 50
    counters = _counters(proc)
    assert counters.get("unknown", 0) >= 20 and counters.get("known", 0) >= 100
    assert counters.get("degraded", 0) >= counters["unknown"]
    assert Path(f"{tmp_path / 'run'}.html").stat().st_size > 0


def test_locust_spike_shape_stops_by_itself(recommend_server: Any, tmp_path: Path) -> None:
    proc, rows = _run_locust(recommend_server, tmp_path, users=6, run_time_s=8,
                             classes=["GrpcRecommendUser"], shape="spike")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Shape test" in proc.stderr
    assert int(rows[":Aggregated"]["Failure Count"]) == 0
    assert int(rows["grpc:recommend"]["Request Count"]) >= 20
