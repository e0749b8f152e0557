"""Push-to-visible latency of interaction events through the real tritonserver.

    python benchmarks/events_latency.py --export build/exports/demo [--pushes 300]
    python benchmarks/events_latency.py              # builds a small synthetic export first

Starts its own tritonserver on free loopback ports on a COPY of the export (events change the
online store and write the interaction log) and stops it by pid at the end. For each of
``--pushes`` seeded (user, item) picks: ask ``recommend`` (top 10), push the answer's first item as
an event (``interactions`` model, gRPC), then ask ``recommend`` until the item is gone; records

* ``ack_ms``: the push call alone (validation + Parquet append with fsync + Feast push),
* ``visible_ms``: from sending the push to the first answer without the item (push + the polls),
* ``polls``: answers needed after the ack (1 = the very next request already saw it).

Also a rate run: ``--burst`` pushes back to back (one event each) -> events/s of one client.
Prints a summary and writes ``benchmarks/results/events-latency.json``. Absolute numbers on a
shared 2-core box are noisy; the target is p99 visible <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.latency import summarize  # noqa: E402

SMALL = dict(n_users=1000, n_items=500, n_interactions=25_000, seed=11, test_fraction=0.1)


def small_export(work: Path) -> Path:
    from cascade.workflows.artifacts import TrainConfig, train_all
    from cascade.workflows.export import export_repository
    from cascade.workflows.synthetic import SyntheticConfig, generate
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig

    data = work / "data"
    if not (data / "dataset.json").is_file():
        generate(data, SyntheticConfig(**SMALL), name="events-bench", progress=False)
    config = TrainConfig(retrieval=RetrievalTrainConfig(epochs=2, progress=False),
                         ranking=RankingTrainConfig(epochs=1, progress=False))
    layout, _, _ = train_all(data, work / "artifacts", config, progress=False, log=lambda _: None)
    return export_repository(data, work / "export", artifacts_dir=layout.root).root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path, help="export to copy and serve (default: build a small one)")
    parser.add_argument("--pushes", type=int, default=300)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-wait-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "events-latency.json")
    args = parser.parse_args()

    import pandas as pd

    from cascade.client import RecommendClient
    from cascade.events.client import EventsClient
    from cascade.serving.testing import TritonServerFactory

    work = Path(tempfile.mkdtemp(prefix="cascade-events-bench-"))
    factory = TritonServerFactory(log_dir=work / "logs", ready_timeout_s=900.0)  # a loaded shared box
    try:
        source = args.export.resolve() if args.export else small_export(ROOT / "build" / "events-bench")  # cached
        export = work / "served"
        shutil.copytree(source, export, symlinks=True)
        from cascade.features.repo import FeatureRepo

        data_dir = Path(str(FeatureRepo.load(export / "feature_repo").extra["dataset_dir"]))
        users = pd.read_parquet(data_dir / "train.parquet", columns=["user_id"]).user_id.unique()
        rng = np.random.default_rng(args.seed)
        picks = rng.choice(users, size=min(args.pushes, len(users)), replace=False)
        started = time.perf_counter()
        server = factory(export / "model_repository")
        start_s = time.perf_counter() - started
        acks, visible, polls, misses = [], [], [], 0
        with RecommendClient(server.grpc_url) as rec, EventsClient(server.grpc_url) as events:
            for user in picks[:5]:  # warm the connections and the stages
                rec.recommend(int(user), k=10)
            for user in picks:
                target = rec.recommend(int(user), k=10).item_ids[0]
                t0 = time.perf_counter()
                events.push(int(user), [target])
                t1 = time.perf_counter()
                n = 0
                while True:
                    n += 1
                    answer = rec.recommend(int(user), k=10)
                    if target not in answer.item_ids:
                        break
                    if time.perf_counter() - t0 > args.max_wait_s:
                        misses += 1
                        break
                t2 = time.perf_counter()
                acks.append(1000 * (t1 - t0))
                visible.append(1000 * (t2 - t0))
                polls.append(n)
            item_pool = [rec.recommend(int(u), k=1).item_ids[0] for u in picks[:20]]
            burst_users = rng.choice(users, size=args.burst)
            t0 = time.perf_counter()
            for i, user in enumerate(burst_users):
                events.push(int(user), [item_pool[i % len(item_pool)]])
            burst_s = time.perf_counter() - t0
        result = {
            "benchmark": "events_latency",
            "host": platform.node(), "python": platform.python_version(),
            "export": str(source), "pushes": len(picks), "server_start_s": round(start_s, 1),
            "ack_ms": summarize(acks), "visible_ms": summarize(visible),
            "polls": {"mean": float(np.mean(polls)), "max": int(np.max(polls)),
                      "share_next_request": float(np.mean(np.asarray(polls) == 1))},
            "not_visible_within_max_wait": misses,
            "burst": {"pushes": int(args.burst), "seconds": round(burst_s, 3),
                      "events_per_s": round(args.burst / burst_s, 1)},
            "target": "visible p99 <= 1000 ms",
            "note": "shared 2-core box, other engineers' jobs running: absolute numbers are noisy",
        }
    finally:
        factory.close()
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    a, v = result["ack_ms"], result["visible_ms"]
    print(f"push ack        p50 {a['p50_ms']:7.1f} ms  p99 {a['p99_ms']:7.1f} ms  max {a['max_ms']:7.1f} ms")
    print(f"push-to-visible p50 {v['p50_ms']:7.1f} ms  p99 {v['p99_ms']:7.1f} ms  max {v['max_ms']:7.1f} ms "
          f"(next request saw it: {100 * result['polls']['share_next_request']:.0f}%, misses {misses})")
    print(f"burst: {result['burst']['events_per_s']} events/s (one client, one event per request)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
