"""The in-process pipeline's batched path (``InProcessRecommender.recommend_many``) over a real
tiny export (trained ONNX models, FAISS, Feast on a temp SQLite file), and ``cascade evaluate``
scoring it through the method registry. The served-equals-evaluated test against a running
tritonserver is tests/integration/test_evaluate_parity.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cascade.errors import InvalidInputError


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cascade.workflows.artifacts import TrainConfig, train_all
    from cascade.workflows.export import export_repository
    from cascade.workflows.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("pipe")
    data = root / "data"
    generate(data, SyntheticConfig(n_users=150, n_items=120, n_interactions=4000, n_categories=5, n_brands=12, seed=3),
             name="pipe", progress=False)
    config = TrainConfig()
    for part in (config.retrieval, config.ranking):
        part.epochs, part.min_steps_per_epoch, part.progress, part.threads = 1, 10, False, 1
    config.retrieval.model.dim = config.retrieval.model.item_embedding_dim = 16
    layout, _, _ = train_all(data, root / "art", config, progress=False, log=lambda _: None)
    result = export_repository(data, root / "export", artifacts_dir=layout.root, n_candidates=60, record_latest=False)
    return data, result.root


@pytest.fixture(scope="module")
def recommender(export):
    from cascade.online.pipeline import InProcessRecommender

    return InProcessRecommender.load(export[1])


def test_recommend_many_equals_recommend_per_user(export, recommender) -> None:
    data, _ = export
    train = pd.read_parquet(data / "train.parquet")
    users = np.concatenate([train["user_id"].drop_duplicates().to_numpy()[:9], [10**12]])  # + an unknown user
    singles = [recommender.recommend(int(u), top_k=10) for u in users]
    for chunk in (1, 4, 256):
        many = recommender.recommend_many(users, top_k=10, chunk=chunk)
        assert len(many) == len(users)
        for one, batched in zip(singles, many):
            assert batched.item_ids.tolist() == one.item_ids.tolist()
            np.testing.assert_allclose(batched.scores, one.scores, rtol=1e-5, atol=1e-5)
            assert batched.degraded == one.degraded and batched.model_version == one.model_version
    assert many[-1].degraded and not many[0].degraded
    seen = set(train.loc[train["user_id"] == users[0], "item_id"])
    assert len(many[0].item_ids) == 10 and not seen & set(many[0].item_ids.tolist())


def test_retrieval_stage_and_exclusions(export, recommender) -> None:
    data, _ = export
    train = pd.read_parquet(data / "train.parquet")
    users = train["user_id"].drop_duplicates().to_numpy()[:4]
    candidates = recommender.recommend_many(users, top_k=50, stage="retrieval")
    for user, answer in zip(users, candidates):
        assert len(answer.item_ids) == 50 and len(set(answer.item_ids.tolist())) == 50
        assert not set(train.loc[train["user_id"] == user, "item_id"]) & set(answer.item_ids.tolist())
        assert np.isnan(answer.scores).all()
    first = recommender.recommend_many(users, top_k=10)
    exclude = [a.item_ids[:3] for a in first]
    second = recommender.recommend_many(users, top_k=10, exclude=exclude)
    for answer, ex in zip(second, exclude):
        assert not np.isin(answer.item_ids, ex).any() and len(answer.item_ids) == 10


@pytest.mark.parametrize("kwargs, field", [
    (dict(top_k=0), "top_k"),
    (dict(top_k=61), "top_k"),  # > the export's 60 candidates
    (dict(explore=float("nan")), "explore"),
    (dict(seed=-5, explore=1.0), "seed"),
    (dict(exclude=[[1]]), "exclude"),  # one list for two users
    (dict(stage="ranking"), "stage"),
])
def test_bad_requests_fail_before_any_stage_runs(recommender, kwargs, field) -> None:
    with pytest.raises(InvalidInputError, match=field):
        recommender.recommend_many([1, 2], **{"top_k": 5, **kwargs})


def test_evaluate_scores_the_served_pipeline(export, tmp_path: Path) -> None:
    from cascade.cli import app

    data, root = export
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--export", str(root), "--out", str(out),
                                      "--methods", "popularity,retrieval,served", "--ks", "10,50"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    names = [m["name"] for m in report["methods"]]
    assert names == ["popularity", "retrieval", "served pipeline"]
    served = report["methods"][2]
    assert served["seen_leaks"] == 0 and served["details"]["stage"] == "served"
    assert 0.0 <= served["metrics"]["recall@50"] <= 1.0
    assert "per-user temporal" in report["split"]

    bad = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--export", str(root), "--methods", "served,nope"])
    assert bad.exit_code != 0 and "--methods" in bad.output
    too_deep = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--export", str(root), "--out", str(out),
                                        "--methods", "served", "--ks", "10,100"])
    assert too_deep.exit_code != 0 and "--ks" in too_deep.output
