"""The real thing, small: a tiny synthetic dataset, trained two-tower + DLRM, Feast on SQLite,
an export, and a tritonserver serving the `recommend` ensemble on free ports (once per session)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.serving.server import TritonServer
from cascade.serving.testing import TritonServerFactory

TINY = dict(n_users=400, n_items=250, n_interactions=30_000, seed=7, test_fraction=0.2, n_categories=8, n_brands=20)
REFRESH_SECONDS = "1"


@dataclass
class RecommendServer:
    server: TritonServer
    export_root: Path
    data_dir: Path
    known_user_ids: list[int]
    seen: dict[int, set[int]]
    categories: dict[int, str]
    popular_item_ids: list[int]

    @property
    def http_url(self) -> str:
        return self.server.http_address

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.server.metrics_url


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cascade.workflows.artifacts import TrainConfig, train_all
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig
    from cascade.workflows.export import export_repository
    from cascade.workflows.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("cascade")
    data = root / "data"
    generate(data, SyntheticConfig(**TINY), name="tiny", progress=False)
    config = TrainConfig(
        retrieval=RetrievalTrainConfig(epochs=2, progress=False), ranking=RankingTrainConfig(epochs=1, progress=False)
    )
    layout, _, _ = train_all(data, root / "artifacts", config, progress=False, log=lambda _: None)
    result = export_repository(data, root / "export", artifacts_dir=layout.root)
    return data, result.root


@pytest.fixture(scope="session")
def recommend_server(triton_factory: TritonServerFactory, tiny_export: tuple[Path, Path]) -> RecommendServer:
    data, export_root = tiny_export
    os.environ["CASCADE_RANKING_REFRESH_SECONDS"] = REFRESH_SECONDS
    os.environ["CASCADE_CANDIDATES_REFRESH_SECONDS"] = REFRESH_SECONDS  # index extension (items upsert)
    server = triton_factory(export_root / "model_repository")
    train = pd.read_parquet(data / "train.parquet")
    items = pd.read_parquet(data / "items.parquet")
    seen = {int(u): set(g.tolist()) for u, g in train.groupby("user_id")["item_id"]}
    popularity = train["item_id"].value_counts()
    return RecommendServer(
        server=server,
        export_root=export_root,
        data_dir=data,
        known_user_ids=sorted(seen),
        seen=seen,
        categories=dict(zip(items["item_id"].astype(int), items["category"].astype(str))),
        popular_item_ids=[int(i) for i in popularity.index[:60]],
    )


@pytest.fixture(scope="session")
def sample_users(recommend_server: RecommendServer) -> list[int]:
    rng = np.random.default_rng(0)
    return [int(u) for u in rng.choice(recommend_server.known_user_ids, size=12, replace=False)]
