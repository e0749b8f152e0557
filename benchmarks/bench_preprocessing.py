"""Benchmark the preprocessing workflow: fit time, artifact load time, serving transform latency,
and the peak RSS of fitting a 10M-interaction dataset.

    .venv/bin/python benchmarks/bench_preprocessing.py                # demo + large
    .venv/bin/python benchmarks/bench_preprocessing.py --case demo    # 20k users, 10k items, 1M interactions

Datasets come from ``cascade.workflows.synthetic.generate`` into a temporary folder (deleted
afterwards). Fits run in a fresh child process pinned to one BLAS/OpenMP thread; peak RSS is the
child's ``ru_maxrss`` (which includes the dataset-independent interpreter + imports). The serving
transform is timed on the demo workflow: 1,000 candidate rows (item entity, 5% unseen ids, some
nulls) + 1 user row (user entity), median over repetitions. Results: benchmarks/results/preprocessing.json.
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
RESULTS = Path(__file__).resolve().parent / "results" / "preprocessing.json"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

GENERATE = """
import json, sys
from pathlib import Path
from cascade.workflows.synthetic import SyntheticConfig, generate
info = generate(Path(sys.argv[2]), SyntheticConfig(**json.loads(sys.argv[1])), progress=False)
print(json.dumps({"n_train": info.n_train}))
"""

FIT = """
import json, resource, sys, time
from pathlib import Path
from cascade.preprocessing import default_workflow
from cascade.workflows.dataset import DatasetInfo
data, out = Path(sys.argv[1]), Path(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
fitted = default_workflow(DatasetInfo.load(data)).fit(data, progress=False)
seconds = time.perf_counter() - start
fitted.save(out)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"fit_seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1),
                  "rss_after_imports_mib": round(before, 1), "train_rows": fitted.meta.train_rows}))
"""

SERVE = """
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
from cascade.preprocessing import FittedWorkflow
from cascade.preprocessing.tables import read_entity_frame
from cascade.workflows.dataset import load_dataset
data, wf_dir = Path(sys.argv[1]), Path(sys.argv[2])
loads = []
for _ in range(20):
    t = time.perf_counter(); fitted = FittedWorkflow.load(wf_dir); loads.append(time.perf_counter() - t)
paths, _ = load_dataset(data)
rng = np.random.default_rng(0)
items = read_entity_frame(paths, "item", fitted.input_columns("item")).sample(1000, random_state=0)
item_cols = {c.name: items[c.name].to_numpy() for c in fitted.input_columns("item")}
item_cols["item_id"] = np.where(rng.random(1000) < 0.05, rng.integers(10**12, 10**13, 1000), item_cols["item_id"])
users = read_entity_frame(paths, "user", fitted.input_columns("user")).iloc[:1]
user_cols = {c.name: users[c.name].to_numpy() for c in fitted.input_columns("user")}
def timed(fn, reps):
    for _ in range(20): fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return float(np.median(out)) * 1e6, float(np.percentile(out, 99)) * 1e6
item_us = timed(lambda: fitted.transform_batch(item_cols, "item"), 2000)
user_us = timed(lambda: fitted.transform_batch(user_cols, "user"), 2000)
both_us = timed(lambda: (fitted.transform_batch(user_cols, "user"), fitted.transform_batch(item_cols, "item")), 2000)
t = time.perf_counter(); table = fitted.transform_dataset(data, "item", progress=False); items_s = time.perf_counter() - t
t = time.perf_counter(); table = fitted.transform_dataset(data, "user", progress=False); users_s = time.perf_counter() - t
print(json.dumps({
    "load_ms_median": round(float(np.median(loads)) * 1e3, 2),
    "transform_batch_item_1000_us": {"p50": round(item_us[0], 1), "p99": round(item_us[1], 1)},
    "transform_batch_user_1_us": {"p50": round(user_us[0], 1), "p99": round(user_us[1], 1)},
    "transform_batch_user1_plus_item1000_us": {"p50": round(both_us[0], 1), "p99": round(both_us[1], 1)},
    "transform_dataset_items_s": round(items_s, 2), "transform_dataset_users_s": round(users_s, 2),
}))
"""


def child(code: str, *args: str, timeout: int = 1800) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                          env=ENV, timeout=timeout)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(name: str, seed: int) -> dict[str, object]:
    params = {**CASES[name], "seed": seed}
    with tempfile.TemporaryDirectory(prefix="bench-preprocessing-") as tmp:
        data, workflow = Path(tmp) / "data", Path(tmp) / "workflow"
        generated = child(GENERATE, json.dumps(params), str(data))
        result: dict[str, object] = {"params": params, "n_train": generated["n_train"], **child(FIT, str(data), str(workflow))}
        if name == "demo":
            result.update(child(SERVE, str(data), str(workflow)))
    result.update({
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, 1 BLAS thread",
        "command": f"python benchmarks/bench_preprocessing.py --case {name}",
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in CASES if args.case == "all" else [args.case]:
        results[name] = run_case(name, args.seed)
        print(json.dumps({name: results[name]}, indent=2))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
