"""A serving export over a big generated catalog that reuses an existing export's trained models.

    python benchmarks/make_catalog_export.py --base-export build/exports/demo \
        --data build/data/catalog1m --out build/exports/catalog1m-bench

For latency work on a 1M-item catalog the models' quality is irrelevant, but `cascade export` on
1M items trains from scratch (and was OOM-killed on this 23 GB box in its training step). This
builds what serving needs and nothing else: the base export's fitted workflow, user tower and DLRM
(linked), item embeddings of every catalog item from the base item tower (ONNX Runtime, chunked),
the FAISS index (the type `cascade export` chooses: IVF-Flat with ``nprobe`` tuned to recall@100 >=
0.98 vs exact above 100k items, workflows/index.py; ``--ef-construction`` applies to HNSW only),
the item-to-item neighbours of every catalog item (``artifacts/candidates/``: the training code's
cosine co-occurrence on the dataset's train interactions, with the base export's candidate mix, so
retrieval merges the same sources and scores the same features as the base), the Feast repo for
the dataset with the ``user`` view materialized into the online store and the item snapshot
published (the item view's online copy is not on the hot path and is skipped), ``export.json`` and
the model repository from the current sources.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def item_embeddings(base: Path, data: Path, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort
    import pyarrow.parquet as pq

    from cascade.features.schema import numpy_column
    from cascade.online.stages import load_workflow

    workflow = load_workflow(base / "artifacts" / "workflow")
    names = [c.name for c in workflow.input_columns("item")]
    table = pq.read_table(data / "items.parquet")
    item_ids = table.column("item_id").to_numpy().astype(np.int64)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(base / "artifacts" / "retrieval" / "item_tower.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    out = []
    for start in range(0, len(item_ids), chunk):
        part = table.slice(start, chunk)
        columns = {n: numpy_column(part.column(n), False) for n in names if n in part.column_names}
        encoded = workflow.transform_batch(columns, entity="item")
        out.append(session.run(None, {n: np.ascontiguousarray(encoded[n]) for n in inputs})[0])
    return np.concatenate(out).astype(np.float32), item_ids


def neighbours_for_catalog(base: Path, data: Path, item_ids: np.ndarray, out_dir: Path) -> None:
    """The candidates artifact over the big catalog: the training code's cosine co-occurrence
    neighbours (its method above ``EASE_MAX_ITEMS`` items) with the base export's candidate mix."""
    import pandas as pd

    from cascade.online.candidates import ItemNeighbours
    from cascade.workflows.candidates import CandidatesConfig, build_item_neighbours

    base_mix = ItemNeighbours.load(base / "artifacts" / "candidates").meta.get("mix", {})
    config = CandidatesConfig(method="cosine", tune_share=False,
                              item2item_share=float(base_mix.get("item2item", 0.5)),
                              popular_share=float(base_mix.get("popular", 0.1)),
                              short_history=int(base_mix.get("short_history", 5)))
    frame = pd.read_parquet(data / "train.parquet", columns=["user_id", "item_id", "timestamp"])
    neighbours = build_item_neighbours(item_ids, frame, config)
    neighbours.save(out_dir)
    log(f"neighbours: {neighbours.n_items} items x top {config.top_m} in {neighbours.meta['seconds']} s, "
        f"mix {neighbours.meta['mix']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-export", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--chunk", type=int, default=100_000)
    args = p.parse_args(argv)
    base, out = args.base_export.resolve(), args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "artifacts").mkdir(parents=True)
    for part in ("workflow", "retrieval", "ranking"):
        (out / "artifacts" / part).symlink_to(base / "artifacts" / part)

    log("item embeddings ...")
    embeddings, item_ids = item_embeddings(base, args.data, args.chunk)
    import pyarrow.parquet as pq

    train_items = pq.read_table(args.data / "train.parquet", columns=["item_id"]).column("item_id").to_numpy()
    order = np.argsort(item_ids)
    pos = np.searchsorted(item_ids[order], train_items)
    popularity = np.bincount(order[np.minimum(pos, len(order) - 1)], minlength=len(item_ids)).astype(np.float32)
    log(f"index over {len(item_ids)} items (ef_construction {args.ef_construction}) ...")
    from cascade.workflows.index import IndexConfig, write_index

    meta = write_index(out / "artifacts" / "index", embeddings, item_ids, popularity,
                       IndexConfig(ef_construction=args.ef_construction, deterministic=False, recall_queries=200))
    log(f"index: {meta.get('index_type')} built in {meta.get('build_seconds')} s, "
        f"recall@100 {meta.get('recall@100_vs_exact')}")

    if (base / "artifacts" / "candidates").is_dir():
        log("item-to-item neighbours (cosine co-occurrence over train) ...")
        neighbours_for_catalog(base, args.data, item_ids, out / "artifacts" / "candidates")

    log("feature repo: generate, apply, materialize the user view, publish the item snapshot ...")
    from cascade.features.repo import USER_VIEW, FeatureRepo, generate_feature_repo
    from cascade.features.snapshot import write_item_snapshot
    from cascade.features.store import apply, materialize_range, open_store

    generate_feature_repo(args.data, out / "feature_repo")
    apply(out / "feature_repo")
    repo = FeatureRepo.load(out / "feature_repo")
    store = open_store(repo.root)
    start, end = materialize_range(repo)
    from cascade.progress import library_bars_quiet

    with library_bars_quiet():  # Feast's bar: on a terminal only
        store.materialize(start_date=start, end_date=end, feature_views=[USER_VIEW])
    snapshot_version, n = write_item_snapshot(store, repo, start, end)
    log(f"snapshot {snapshot_version} ({n} items)")

    manifest = json.loads((base / "export.json").read_text())
    info = json.loads((args.data / "dataset.json").read_text())
    manifest.update(
        version=f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-bench1m",
        created_at=datetime.now(timezone.utc).isoformat(), dataset_name=info.get("name", args.data.name),
        dataset_hash=info.get("content_hash", ""), snapshot_version=snapshot_version,
    )
    (out / "export.json").write_text(json.dumps(manifest, indent=2))
    (out / "BENCHMARK_ONLY.txt").write_text(
        f"benchmark-only export: the models of {base} over the {args.data} catalog "
        "(benchmarks/make_catalog_export.py); not a trained 1M-item model\n")
    repo_dir = out / "model_repository"
    shutil.copytree(ROOT / "model_repository", repo_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".gitkeep"))
    from cascade.online.export_layout import RULES_IN_EXPORT, ExportLayout

    shutil.copy2(ExportLayout(base).business_rules, out / RULES_IN_EXPORT)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
