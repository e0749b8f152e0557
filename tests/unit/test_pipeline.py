"""OfflinePipeline over trained artifacts: shapes, -1 padding, seen/exclude filtering, stages,
and the BatchRecommender adapters."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from cascade.errors import InvalidInputError
from cascade.workflows.artifacts import TrainConfig, train_all


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    from cascade.pipeline import OfflinePipeline
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
    return OfflinePipeline.load(layout.root), data


def test_shapes_padding_and_seen_filter(pipeline) -> None:
    pipe, data = pipeline
    train = pd.read_parquet(data / "train.parquet")
    users = np.array([train["user_id"].iloc[0], 10**12], dtype=np.int64)  # a known and an unknown user
    for stage in ("retrieval", "ranking"):
        recs = pipe.recommend_batch(users, 500, stage=stage)
        assert recs.shape == (2, 500) and recs.dtype == np.int64
        assert (recs[:, -1] == -1).all()  # 500 > catalog: padded
        seen = set(train.loc[train["user_id"] == users[0], "item_id"])
        assert not (set(recs[0][recs[0] >= 0].tolist()) & seen)
        assert len(set(recs[1][recs[1] >= 0].tolist())) == (recs[1] >= 0).sum()  # cold-start answer, distinct


def test_exclude_and_adapters(pipeline) -> None:
    from cascade.pipeline import BatchRecommender, recommenders

    pipe, data = pipeline
    users = pd.read_parquet(data / "users.parquet")["user_id"].to_numpy()[:5]
    first = pipe.recommend_batch(users, 10, stage="ranking")
    exclude = [row[:3] for row in first]
    second = pipe.recommend_batch(users, 10, stage="ranking", exclude=exclude)
    for row, ex in zip(second, exclude):
        assert not np.isin(row, ex).any()
    for rec in recommenders(pipe):
        assert isinstance(rec.name, str)
        out = rec.recommend(users, 7, exclude)
        assert out.shape == (5, 7)
        _: BatchRecommender = rec
    with pytest.raises(InvalidInputError, match="stage"):
        pipe.recommend_batch(users, 5, stage="nope")  # type: ignore[arg-type]
