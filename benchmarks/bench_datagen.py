"""Benchmark `cascade data generate`: wall time and peak RSS per size, one fresh process per case.

    .venv/bin/python benchmarks/bench_datagen.py                 # demo case (20k users, 10k items, 1M)
    .venv/bin/python benchmarks/bench_datagen.py --case large    # 200k users, 50k items, 10M interactions

Each case runs in a child process pinned to one BLAS/OpenMP thread; peak RSS is the child's
``resource.getrusage(RUSAGE_SELF).ru_maxrss``; ``seconds`` is wall time of generate() (includes
waiting for a busy CPU), ``cpu_seconds`` the child's user+system CPU time (whole process). Results are merged into benchmarks/results/datagen.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

CASES = {
    "demo": {"n_users": 20_000, "n_items": 10_000, "n_interactions": 1_000_000},
    "large": {"n_users": 200_000, "n_items": 50_000, "n_interactions": 10_000_000},
}
RESULTS = Path(__file__).resolve().parent / "results" / "datagen.json"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from cascade.workflows.synthetic import SyntheticConfig, generate
config = SyntheticConfig(**json.loads(sys.argv[1]))
start = time.perf_counter()
info = generate(Path(sys.argv[2]), config, progress=False)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
peak_mib = usage.ru_maxrss / 1024
size = sum(p.stat().st_size for p in Path(sys.argv[2]).rglob("*") if p.is_file())
print(json.dumps({"seconds": round(seconds, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mib": round(peak_mib, 1),
                  "n_train": info.n_train, "n_test": info.n_test, "dataset_mib": round(size / 2**20, 1)}))
"""


def run_case(name: str, seed: int) -> dict[str, object]:
    params = {**CASES[name], "seed": seed}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-datagen-") as tmp:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(params), str(Path(tmp) / name)],
            check=True, capture_output=True, text=True, env=env, timeout=1800,
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"params": params, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="case(s) to run (default: demo)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in args.case or ["demo"]:
        result = run_case(name, args.seed)
        result.update(
            measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            machine=f"{platform.machine()} {os.cpu_count()} cpus, 1 BLAS thread",
            command=f"python benchmarks/bench_datagen.py --case {name}",
        )
        results[name] = result
        print(name, json.dumps(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
