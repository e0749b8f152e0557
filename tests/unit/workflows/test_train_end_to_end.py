"""`cascade train` end to end on a tiny generated dataset: artifact layout of docs/DESIGN.md, ONNX
inputs named after workflow outputs, the cache skipping a second run, and the served pipeline
beating popularity (recall@k on the temporal test split, scored as `cascade evaluate` does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cascade.workflows.artifacts import REQUIRED_FILES, ArtifactLayout, TrainConfig, train_all


def tiny_config() -> TrainConfig:
    config = TrainConfig()
    r, k = config.retrieval, config.ranking
    r.epochs, r.min_steps_per_epoch, r.progress, r.threads = 3, 25, False, 1
    k.epochs, k.min_steps_per_epoch, k.progress, k.threads, k.positives_per_user = 2, 25, False, 1, 8
    r.model.dim = r.model.item_embedding_dim = 32
    r.model.hidden = [64]
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    from cascade.workflows.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    generate(data, SyntheticConfig(n_users=300, n_items=200, n_interactions=9000, n_categories=6, n_brands=20, seed=7),
             name="tiny", progress=False)
    layout, summary, cached = train_all(data, root / "artifacts", tiny_config(), progress=False, log=lambda _: None)
    assert not cached
    return data, layout.root, summary


def test_layout_matches_design(trained: tuple) -> None:
    _, art, summary = trained
    assert ArtifactLayout(art).missing() == []
    for name in REQUIRED_FILES:
        assert (art / name).exists(), name
    ids = np.load(art / "index/item_ids.npy")
    items = pd.read_parquet(trained[0] / "items.parquet")
    assert ids.dtype == np.int64 and np.array_equal(ids, items["item_id"].to_numpy())  # catalog order
    pop = np.load(art / "index/popularity.npy")
    assert pop.dtype == np.float32 and pop.sum() == len(pd.read_parquet(trained[0] / "train.parquet"))
    meta = json.loads((art / "index/meta.json").read_text())
    assert meta["index_type"] == "IndexFlatIP" and meta["recall@100_vs_exact"] == 1.0
    r = json.loads((art / "retrieval/meta.json").read_text())
    assert r["dim"] == 32 and r["temperature"] > 0 and r["training"]["best_epoch"] >= 1
    cand = json.loads((art / "candidates/meta.json").read_text())
    assert cand["method"] == "ease" and cand["n_items"] == 200 and cand["lambda"] > 0
    assert np.load(art / "candidates/neighbours.npy").shape == (200, cand["top_m"])


def test_onnx_inputs_are_workflow_outputs(trained: tuple) -> None:
    from cascade.workflows.artifacts import load_workflow
    from cascade.workflows.onnx_export import onnx_session

    _, art, _ = trained
    fitted = load_workflow(art / "workflow")
    user = [s.name for s in fitted.output_schema("user")]
    item = [s.name for s in fitted.output_schema("item")]
    assert [i.name for i in onnx_session(art / "retrieval/user_tower.onnx").get_inputs()] == user
    assert [i.name for i in onnx_session(art / "retrieval/item_tower.onnx").get_inputs()] == item
    ranker = onnx_session(art / "ranking/dlrm.onnx")
    # + the per-candidate inputs retrieval sends (source bitmask, item-to-item score), then user_row
    assert [i.name for i in ranker.get_inputs()] == user + item + ["candidate_source", "candidate_score", "user_row"]
    assert [o.name for o in ranker.get_outputs()] == ["score"]


def test_second_run_is_cached(trained: tuple) -> None:
    data, art, _ = trained
    _, _, cached = train_all(data, art, tiny_config(), progress=False)
    assert cached


def test_served_pipeline_beats_popularity_on_test_split(trained: tuple, tmp_path: Path) -> None:
    """Scored as `cascade evaluate` scores it: the served stages over an export of these artifacts."""
    from cascade.online.pipeline import InProcessRecommender
    from cascade.workflows.baselines import Catalog, PopularityRecommender, read_interactions
    from cascade.workflows.evaluate import evaluate
    from cascade.workflows.evaluate_methods import PipelineMethod
    from cascade.workflows.export import export_repository

    data, art, _ = trained
    export = export_repository(data, tmp_path / "export", artifacts_dir=art, record_latest=False).root
    served = InProcessRecommender.load(export)
    popularity = PopularityRecommender.fit(Catalog.from_dataset(data), read_interactions(data / "train.parquet"))
    methods = [popularity, PipelineMethod(served, "retrieval", "retrieval"), PipelineMethod(served, "served", "served")]
    report = evaluate(data, methods, ks=(20,), progress=False)
    recall = {m.name: m.metrics["recall@20"] for m in report.methods}
    assert recall["served"] > recall["popularity"] and recall["retrieval"] > recall["popularity"], recall
    assert all(m.seen_leaks == 0 for m in report.methods)


def test_cli_missing_dataset_exits_2(tmp_path: Path) -> None:
    from cascade.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "nope"), "--no-progress"])
    assert result.exit_code == 2
